@testable import Access
import FHIRModel
import Foundation
import HTTPTypes
import Store
import XCTest

/// A resident (patient/ scopes) sees the records of all their Patients at every facility (through
/// the master index) and nobody else's, reads who accessed them, and manages their own Consents.
final class ResidentAccessTests: XCTestCase {
    func test_residentSeesOnlyTheirOwnRecords_andWhoReadThem() async throws {
        try await TestServer.run(development: false) { server, store in
            let a = try await clientHeaders(server, store, "org-a"), b = try await clientHeaders(server, store, "org-b")
            func patient(_ id: String, _ family: String, _ given: String) -> String {
                #"{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"\#(id)"}],"name":[{"family":"\#(family)","given":["\#(given)"]}],"gender":"female","birthDate":"1949-12-31"}"#
            }
            func create(_ type: String, _ body: String, _ by: [String: String]) async throws -> String {
                let r = try await server.request(.post, "/fhir/\(type)", body, headers: by)
                return try XCTUnwrap(r.id, r.bodyText)
            }
            let pa = try await create("Patient", patient("11010519491231002X", "钱", "芳"), a)
            let pb = try await create("Patient", patient("11010519491231002X", "钱", "芳"), b)
            let px = try await create("Patient", patient("110101199003071232", "孙", "丽"), a)
            func observation(_ p: String, _ by: [String: String]) async throws -> String {
                try await create("Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"Patient/\#(p)"}}"#, by)
            }
            let oa = try await observation(pa, a), ob = try await observation(pb, b), ox = try await observation(px, a)
            let person = try await server.request(.get, "/fhir/Person?link=Patient/\(pa)", headers: a)
            let personID = try XCTUnwrap(person.json["entry"]?[0]?["resource"]?["id"]?.stringValue)
            let linked = (person.json["entry"]?[0]?["resource"]?["link"]?.arrayValue ?? []).compactMap { $0["target"]?["reference"]?.stringValue }
            XCTAssertEqual(Set(linked), ["Patient/\(pa)", "Patient/\(pb)"], "one resident, registered at two facilities")

            let created = try await UserDirectory.create(username: "qian.fang", role: .resident, facility: nil, patient: "Person/\(personID)",
                                                         scopes: "patient/*.rs patient/Consent.cu", in: store)
            let secret = try XCTUnwrap(Base32.decode(created.account.totpSecret))
            let code = TOTP.code(secret: secret, counter: Int64(Date().timeIntervalSince1970) / 30)
            let login = try await server.request(.post, "/auth/login", "username=qian.fang&password=\(created.password)&totp=\(code)",
                                                 headers: ["Content-Type": "application/x-www-form-urlencoded"])
            let me = ["Authorization": "Bearer \(try XCTUnwrap(login.json["access_token"]?.stringValue))"]

            for (path, status) in [("Patient/\(pa)", 200), ("Patient/\(pb)", 200), ("Observation/\(ob)", 200),
                                   ("Patient/\(px)", 403), ("Observation/\(ox)", 403)] {
                let r = try await server.request(.get, "/fhir/\(path)", headers: me)
                XCTAssertEqual(r.status, status, path)
            }
            let mine = try await server.request(.get, "/fhir/Observation?code:text=bp", headers: me)
            let ids = Set((mine.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue })
            XCTAssertEqual(ids, [oa, ob])
            let write = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#, headers: me)
            XCTAssertEqual(write.status, 403)
            let history = try await server.request(.get, "/fhir/Observation/_history", headers: me)
            XCTAssertEqual(history.status, 403)

            // Their own Consent, not someone else's.
            func consent(_ p: String) -> String {
                #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/\#(p)"},"provision":{"type":"deny"}}"#
            }
            let got1 = try await server.request(.post, "/fhir/Consent", consent(pa), headers: me).status
            XCTAssertEqual(got1, 201)
            let got2 = try await server.request(.post, "/fhir/Consent", consent(px), headers: me).status
            XCTAssertEqual(got2, 403)

            // Who read my records: facility B's read of A's Observation is there; another resident's trail is not mine to see.
            _ = try await server.request(.get, "/fhir/Observation/\(oa)", headers: a)
            let trail = try await server.request(.get, "/fhir/AuditEvent", headers: me)
            XCTAssertEqual(trail.status, 200, trail.bodyText)
            let about = (trail.json["entry"]?.arrayValue ?? []).flatMap { $0["resource"]?["entity"]?.arrayValue ?? [] }
                .compactMap { $0["what"]?["reference"]?.stringValue }
            XCTAssertTrue(about.contains("Patient/\(pa)") && about.contains("Patient/\(pb)"))
            XCTAssertFalse(about.contains("Patient/\(px)"))
            let got3 = try await server.request(.get, "/fhir/AuditEvent?patient=Patient/\(px)", headers: me).status
            XCTAssertEqual(got3, 403)
        }
    }
}
