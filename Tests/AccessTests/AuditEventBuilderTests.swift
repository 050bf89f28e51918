import FHIRModel
@testable import Access
import Store
import XCTest

/// The stored audit entry is compact JSON whose bytes the chain hashes: valid JSON in the
/// server's canonical form, whatever the names, reasons and queries hold, and rendered as an R4
/// AuditEvent that says who, what, about whom and why.
final class AuditEventBuilderTests: XCTestCase {
    func test_entry_isCanonicalJSON_andRendersEveryField() throws {
        let who = Principal(kind: .user, subject: "张医生 \"zhang\"", role: .emergencyClinician, facility: "h1",
                            scopes: [], tokenID: "jti-1")
        let origin = RequestOrigin(address: "10.0.0.7", breakGlassReason: "昏迷\n急诊\\抢救")
        let record = AuditEventBuilder.make(principal: who, origin: origin, interaction: .operation("everything"), type: "Patient",
                                            entities: [ResourceKey("Patient", "p1"), ResourceKey("Encounter", "e1")],
                                            patients: ["Patient/p1"], query: "name=张&_count=\t10",
                                            outcome: .denied("no \"treatment\" relationship"), recorded: 1_700_000_000_123_456)
        let parsed = try JSONParser.parse(record.content)
        XCTAssertEqual(JSONWriter.bytes(parsed), record.content, "the entry is in the writer's canonical form")
        XCTAssertEqual(record.patients, ["Patient/p1"])
        XCTAssertEqual(record.recorded, 1_700_000_000_123_456)

        let event = AuditEventBuilder.render(record.content, seq: 7, hash: String(repeating: "a", count: 64))
        let text = String(decoding: JSONWriter.bytes(event), as: UTF8.self)
        for expected in [#""id":"7""#, #""outcome":"4""#, #""outcomeDesc":"no \"treatment\" relationship""#, #""code":"ETREAT""#,
                         #""text":"昏迷\n急诊\\抢救""#, #""value":"张医生 \"zhang\"""#, #""display":"Organization/h1""#,
                         #""altId":"jti-1""#, #""address":"10.0.0.7""#, #""reference":"Patient/p1""#,
                         #""reference":"Encounter/e1""#, #""code":"everything""#, #""recorded":"2023-11-14T22:13:20.123Z""#] {
            XCTAssertTrue(text.contains(expected), "\(expected) missing from \(text)")
        }
        XCTAssertEqual(text.components(separatedBy: #""reference":"Patient/p1""#).count, 2, "a patient is not repeated as an entity")
        let query = Array("name=张&_count=\t10".utf8)
        XCTAssertTrue(text.contains(Data(query).base64EncodedString()))
    }

    func test_minimalEntry_hasNoOptionalMembers() throws {
        let record = AuditEventBuilder.make(principal: .development, origin: .local, interaction: .search, type: nil, entities: [],
                                            patients: [], recorded: 5)
        XCTAssertEqual(String(decoding: record.content, as: UTF8.self),
                       #"{"t":5,"i":"search-type","a":"E","o":"0","k":"development","s":"development","r":"administrator"}"#)
    }
}
