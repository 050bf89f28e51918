@testable import Access
import FHIRModel
import Foundation
import HTTPTypes
import Store
import XCTest

/// The AuditEvents of a search, read with `token`.
func auditEvents(_ server: TestServer, _ query: String, _ token: String) async throws -> [JSON] {
    let r = try await server.request(.get, "/fhir/AuditEvent?\(query)", headers: bearer(token))
    XCTAssertEqual(r.status, 200, r.bodyText)
    return (r.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"] }
}

/// The audit trail seen through FHIR: every interaction on patient data leaves an AuditEvent
/// naming who (client, role, facility), what, about whom and the outcome; refusals too; the trail
/// cannot be written by clients, and it verifies as an unbroken chain.
final class AuditTrailTests: XCTestCase {
    func test_interactionsOnAPatient_areAuditedWithWhoWhatAndOutcome() async throws {
        try await TestServer.run(development: false) { server, store in
            let his = try await token(server, store, scopes: "system/Patient.cruds system/Observation.cruds")
            let auditor = try await token(server, store, scopes: "system/AuditEvent.rs", role: .administrator)
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: bearer(his))
            let pid = try XCTUnwrap(p.id)
            let o = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"血糖"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: bearer(his))
            XCTAssertEqual(o.status, 201)
            _ = try await server.request(.get, "/fhir/Patient/\(pid)", headers: bearer(his))
            _ = try await server.request(.get, "/fhir/Observation?subject=Patient/\(pid)", headers: bearer(his))
            let refused = try await server.request(.get, "/fhir/Condition?subject=Patient/\(pid)", headers: bearer(his))
            XCTAssertEqual(refused.status, 403)

            let trail = try await auditEvents(server, "patient=Patient/\(pid)", auditor)
            let actions = trail.map { "\($0["action"]!.stringValue!) \($0["subtype"]![0]!["code"]!.stringValue!)" }
            // Newest first: the search, the read, the Observation's create, the Patient's create.
            XCTAssertEqual(actions, ["E search-type", "R read", "C create", "C create"], "\(actions)")
            for e in trail {
                XCTAssertEqual(e["outcome"]?.stringValue, "0")
                XCTAssertEqual(e["agent"]?[0]?["role"]?[0]?["coding"]?[0]?["code"]?.stringValue, "facility-system")
                XCTAssertEqual(e["agent"]?[0]?["who"]?["display"]?.stringValue?.hasSuffix("@ Organization/org-1"), true)
                XCTAssertNotNil(e["agent"]?[0]?["altId"]?.stringValue, "the token id")
                XCTAssertNotNil(e["id"]?.stringValue)
            }
            let search = trail[0]
            let query = search["entity"]?.arrayValue?.compactMap { $0["query"]?.stringValue }.first
            XCTAssertEqual(query.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }, "subject=Patient/\(pid)")
            // The refusal is in the trail too (outcome 4, with the reason).
            let all = try await auditEvents(server, "_count=100", auditor)
            let denied = all.filter { $0["outcome"]?.stringValue == "4" }
            XCTAssertEqual(denied.count, 1)
            XCTAssertTrue(denied.first?["outcomeDesc"]?.stringValue?.contains("Condition") ?? false)
            // Reading one event by id; and the chain verifies.
            let id = try XCTUnwrap(trail.last?["id"]?.stringValue)
            let one = try await server.request(.get, "/fhir/AuditEvent/\(id)", headers: bearer(auditor))
            XCTAssertEqual(one.status, 200)
            XCTAssertEqual(one.json["action"]?.stringValue, "C")
            let report = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(report.broken)
            XCTAssertGreaterThanOrEqual(report.checked, 8)
            // The trail is not readable without an AuditEvent scope.
            let nosy = try await server.request(.get, "/fhir/AuditEvent?patient=Patient/\(pid)", headers: bearer(his))
            XCTAssertEqual(nosy.status, 403)
        }
    }

    func test_auditEvents_cannotBeWrittenByClients() async throws {
        try await TestServer.run { server, _ in
            let event = #"{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}"#
            let post = try await server.request(.post, "/fhir/AuditEvent", event)
            XCTAssertEqual(post.status, 405, post.bodyText)
            let put = try await server.request(.put, "/fhir/AuditEvent/1", #"{"resourceType":"AuditEvent","id":"1"}"#)
            XCTAssertEqual(put.status, 405)
            let delete = try await server.request(.delete, "/fhir/AuditEvent/1")
            XCTAssertEqual(delete.status, 405)
            let bundle = #"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"AuditEvent/1"}}]}"#
            let tx = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(tx.status, 405, tx.bodyText)
        }
    }

    func test_breakTheGlass_isForEmergencyRoles_andIsRecordedWithTheReason() async throws {
        try await TestServer.run(development: false) { server, store in
            let admin = try await token(server, store, scopes: "system/*.cruds", role: .administrator)
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: bearer(admin))
            let pid = try XCTUnwrap(p.id)
            let clinic = try await token(server, store, scopes: "user/Patient.rs")
            let (client, secret) = try await ClientRegistry.register(name: "ER", facility: "org-er", role: .emergencyClinician,
                                                                     scopes: "user/Patient.rs", jwks: nil, in: store)
            let form = "grant_type=client_credentials&client_id=\(client.id)&client_secret=\(secret!)"
            let granted = try await server.request(.post, "/auth/token", form, headers: ["Content-Type": "application/x-www-form-urlencoded"])
            let er = try XCTUnwrap(granted.json["access_token"]?.stringValue)
            let reason = "昏迷患者急诊抢救 unconscious patient in the emergency room"
            let notAllowed = try await server.request(.get, "/fhir/Patient/\(pid)",
                                                      headers: ["Authorization": "Bearer \(clinic)", "X-Break-Glass-Reason": reason])
            XCTAssertEqual(notAllowed.status, 403)
            let allowed = try await server.request(.get, "/fhir/Patient/\(pid)",
                                                   headers: ["Authorization": "Bearer \(er)", "X-Break-Glass-Reason": reason])
            XCTAssertEqual(allowed.status, 200, allowed.bodyText)
            let trail = try await auditEvents(server, "patient=Patient/\(pid)", admin)
            let glass = try XCTUnwrap(trail.first { $0["purposeOfEvent"]?[0]?["coding"]?[0]?["code"]?.stringValue == "ETREAT" })
            XCTAssertEqual(glass["agent"]?[0]?["purposeOfUse"]?[0]?["text"]?.stringValue, reason)
            XCTAssertEqual(glass["agent"]?[0]?["purposeOfUse"]?[0]?["coding"]?[0]?["code"]?.stringValue, "BTG")
        }
    }
}
