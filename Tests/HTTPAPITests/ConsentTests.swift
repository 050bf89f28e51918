@testable import Access
import FHIRModel
import Foundation
import HTTPTypes
import Store
import XCTest

/// Another facility's records about a resident: readable with a current treatment relationship and
/// no refusal in the resident's Consent, or by breaking the glass; hidden from search, includes,
/// $everything and totals otherwise; a changed consent counts from the next request.
/// The Authorization header of a new client of `facility` (nil: a platform-wide client).
func clientHeaders(_ server: TestServer, _ store: any ResourceStore, _ facility: String?, _ role: Role = .facilitySystem,
                   _ scopes: String = "system/*.cruds") async throws -> [String: String] {
    bearer(try await token(server, store, scopes: scopes, role: role, facility: facility))
}

final class ConsentTests: XCTestCase {
    func test_aFacilityChangesOnlyItsOwnRecords() async throws {
        try await TestServer.run(development: false) { server, store in
            let a = try await clientHeaders(server, store, "org-a"), b = try await clientHeaders(server, store, "org-b")
            let admin = try await clientHeaders(server, store, nil, .administrator)
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(family: "钱", given: "坤"), headers: a)
            let pid = try XCTUnwrap(p.id)
            let subject = #""subject":{"reference":"Patient/\#(pid)"}"#
            let o = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"},\#(subject)}"#, headers: a)
            let oid = try XCTUnwrap(o.id)
            let amended = #"{"resourceType":"Observation","id":"\#(oid)","status":"amended","code":{"text":"HbA1c"},\#(subject)}"#
            let transaction = #"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"new"}},"request":{"method":"POST","url":"Observation"}},{"resource":\#(amended),"request":{"method":"PUT","url":"Observation/\#(oid)"}}]}"#
            for (method, path, body, contentType) in [
                (HTTPRequest.Method.put, "/fhir/Observation/\(oid)", amended, "application/fhir+json"),
                (.patch, "/fhir/Observation/\(oid)", #"[{"op":"replace","path":"/status","value":"cancelled"}]"#, "application/json-patch+json"),
                (.delete, "/fhir/Observation/\(oid)", nil, ""),
                (.post, "/fhir", transaction, "application/fhir+json"),
            ] {
                var headers = b
                if body != nil { headers["Content-Type"] = contentType }
                let r = try await server.request(method, path, body, headers: headers)
                XCTAssertEqual(r.status, 403, "\(method) \(path) by another facility: \(r.bodyText)")
            }
            // Conditional interactions match only what the caller may read (ADR 016): A's record is
            // no match for B, so B's conditional delete deletes nothing and its conditional update
            // makes B's own record.
            let conditionalDelete = try await server.request(.delete, "/fhir/Observation?code:text=HbA1c", headers: b)
            XCTAssertEqual(conditionalDelete.status, 200, conditionalDelete.bodyText)
            let ownCopy = #"{"resourceType":"Observation","status":"amended","code":{"text":"HbA1c"},\#(subject)}"#
            let conditionalUpdate = try await server.request(.put, "/fhir/Observation?code:text=HbA1c", ownCopy, headers: b)
            XCTAssertEqual(conditionalUpdate.status, 201, conditionalUpdate.bodyText)
            XCTAssertNotEqual(conditionalUpdate.id, oid)
            let unchanged = try await server.request(.get, "/fhir/Observation/\(oid)", headers: a)
            XCTAssertEqual(unchanged.json["meta"]?["versionId"]?.stringValue, "1")
            XCTAssertEqual(unchanged.json["status"]?.stringValue, "final")
            let created = try await server.request(.get, "/fhir/Observation?code:text=new", headers: admin)
            XCTAssertEqual(created.json["entry"]?.arrayValue?.count ?? 0, 0, "the refused transaction stored nothing")
            // Refusals are audited; the owner and an administrator may change it.
            let trail = try await server.request(.get, "/fhir/AuditEvent?patient=Patient/\(pid)", headers: admin)
            let refused = (trail.json["entry"]?.arrayValue ?? []).filter { $0["resource"]?["outcome"]?.stringValue == "4" }
            XCTAssertGreaterThanOrEqual(refused.count, 3, trail.bodyText)
            let byOwner = try await server.request(.put, "/fhir/Observation/\(oid)", amended, headers: a).status
            XCTAssertEqual(byOwner, 200)
            let byAdmin = try await server.request(.delete, "/fhir/Observation/\(oid)", headers: admin).status
            XCTAssertEqual(byAdmin, 204)
        }
    }

    func test_sensitiveCategories_needTheResidentsOptIn_orBrokenGlass() async throws {
        try await TestServer.run(development: false) { server, store in
            let a = try await clientHeaders(server, store, "org-a"), b = try await clientHeaders(server, store, "org-b")
            let er = try await clientHeaders(server, store, "org-b", .emergencyClinician, "user/*.rs")
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(family: "孙", given: "悦"), headers: a)
            let pid = try XCTUnwrap(p.id)
            let subject = #""subject":{"reference":"Patient/\#(pid)"}"#
            func condition(_ code: String) async throws -> String {
                let r = try await server.request(.post, "/fhir/Condition", #"{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"\#(code)"}]},\#(subject)}"#, headers: a)
                XCTAssertEqual(r.status, 201, r.bodyText)
                return try XCTUnwrap(r.id)
            }
            let depression = try await condition("F32.9"), asthma = try await condition("J45.9")
            // The platform labelled the record on the way in.
            let stored = try await server.request(.get, "/fhir/Condition/\(depression)", headers: a)
            let labels = (stored.json["meta"]?["security"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue }
            XCTAssertEqual(labels, ["PSY"])
            func visible(_ who: [String: String]) async throws -> Set<String> {
                let r = try await server.request(.get, "/fhir/Condition?subject=Patient/\(pid)&_total=accurate", headers: who)
                let ids = Set((r.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue })
                XCTAssertEqual(r.json["total"]?.numberText, "\(ids.count)", "the total counts what is shown")
                let everything = try await server.request(.get, "/fhir/Patient/\(pid)/$everything", headers: who)
                let all = Set((everything.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue })
                XCTAssertEqual(all.intersection([depression, asthma]), ids, "$everything shows what search shows")
                return ids
            }

            // B treats the resident: it sees the asthma, not the depression.
            let admitted = try await server.request(.post, "/fhir/Encounter", #"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},\#(subject)}"#, headers: b)
            XCTAssertEqual(admitted.status, 201)
            let seen1 = try await visible(b)
            XCTAssertEqual(seen1, [asthma])
            let got1 = try await server.request(.get, "/fhir/Condition/\(depression)", headers: b).status
            XCTAssertEqual(got1, 403)
            // An emergency clinician who breaks the glass sees it (audited).
            var glass = er
            glass["X-Break-Glass-Reason"] = "suicide attempt, unconscious"
            let got2 = try await server.request(.get, "/fhir/Condition/\(depression)", headers: glass).status
            XCTAssertEqual(got2, 200)

            // The resident opts mental-health records in for B, and only B. A facility recording the
            // same opt-in opens nothing: only the resident permits (ADR 016).
            let optIn = #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/\#(pid)"},"provision":{"type":"permit","actor":[{"role":{"text":"recipient"},"reference":{"reference":"Organization/org-b"}}],"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}}"#
            let forged = try await server.request(.post, "/fhir/Consent", optIn, headers: b)
            XCTAssertEqual(forged.status, 201, forged.bodyText)
            let seenForged = try await visible(b)
            XCTAssertEqual(seenForged, [asthma], "a Consent B wrote for itself opts nothing in")
            let resident = bearer(try await server.tokens.issue(for: Principal(kind: .user, subject: "resident", role: .resident,
                                                                               scopes: SMARTScope.parseList("patient/*.rs patient/Consent.cu"),
                                                                               patient: "Patient/\(pid)")).token)
            let consent = try await server.request(.post, "/fhir/Consent", optIn, headers: resident)
            XCTAssertEqual(consent.status, 201, consent.bodyText)
            let seen2 = try await visible(b)
            XCTAssertEqual(seen2, [asthma, depression])
            let c = try await clientHeaders(server, store, "org-c")
            _ = try await server.request(.post, "/fhir/Encounter", #"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},\#(subject)}"#, headers: c)
            let seen3 = try await visible(c)
            XCTAssertEqual(seen3, [asthma], "the opt-in names B only")
        }
    }

    func test_crossFacilityReads_followTreatmentAndConsent_andRevocationIsImmediate() async throws {
        try await TestServer.run(development: false) { server, store in
            func client(_ facility: String?, _ role: Role = .facilitySystem, _ scopes: String = "system/*.cruds") async throws -> [String: String] {
                try await clientHeaders(server, store, facility, role, scopes)
            }
            let a = try await client("org-a"), b = try await client("org-b"), c = try await client("org-c")
            let admin = try await client(nil, .administrator)
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(family: "赵", given: "敏"), headers: a)
            let pid = try XCTUnwrap(p.id)
            let o = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: a)
            let oid = try XCTUnwrap(o.id)
            func entries(_ r: FHIRTestResponse) -> [String] {
                (r.json["entry"]?.arrayValue ?? []).compactMap { e in e["resource"].flatMap { "\($0["resourceType"]!.stringValue!)/\($0["id"]!.stringValue!)" } }
            }

            // No treatment relationship: nothing of facility A's is visible to B, not even as a count.
            let got1 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: b).status
            XCTAssertEqual(got1, 403)
            let hidden = try await server.request(.get, "/fhir/Observation?subject=Patient/\(pid)&_total=accurate", headers: b)
            XCTAssertEqual(entries(hidden), [])
            XCTAssertEqual(hidden.json["total"]?.numberText ?? "0", "0", "a total counts only what is shown")
            let got2 = try await server.request(.get, "/fhir/Patient/\(pid)/_history", headers: b).json["entry"]?.arrayValue?.count ?? 0
            XCTAssertEqual(got2, 0)

            // B admits the resident: an open Encounter of its own.
            let admitted = try await server.request(.post, "/fhir/Encounter", #"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: b)
            XCTAssertEqual(admitted.status, 201, admitted.bodyText)
            let got3 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: b).status
            XCTAssertEqual(got3, 200)
            let shared = try await server.request(.get, "/fhir/Observation?subject=Patient/\(pid)&_include=Observation:subject", headers: b)
            XCTAssertEqual(Set(entries(shared)), ["Observation/\(oid)", "Patient/\(pid)"])

            // The resident refuses all sharing: B loses access everywhere; A keeps its own records.
            let consent = #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/\#(pid)"},"provision":{"type":"deny"}}"#
            let refused = try await server.request(.post, "/fhir/Consent", consent, headers: admin)
            XCTAssertEqual(refused.status, 201, refused.bodyText)
            let cid = try XCTUnwrap(refused.id)
            let got4 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: b).status
            XCTAssertEqual(got4, 403)
            let got5 = try await server.request(.get, "/fhir/Observation?subject=Patient/\(pid)&_include=Observation:subject", headers: b)
            XCTAssertEqual(entries(got5), [])
            let everything = try await server.request(.get, "/fhir/Patient/\(pid)/$everything", headers: b)
            XCTAssertEqual(everything.status, 200, everything.bodyText)
            XCTAssertEqual(entries(everything).filter { !$0.hasPrefix("Encounter/") }, [], "only B's own Encounter")
            XCTAssertNil(everything.json["total"])
            let got6 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: a).status
            XCTAssertEqual(got6, 200)

            // Refuse everyone except facility B.
            let exceptB = consent.replacingOccurrences(of: #""provision":{"type":"deny"}"#, with:
                #""provision":{"type":"deny","provision":[{"type":"permit","actor":[{"role":{"text":"recipient"},"reference":{"reference":"Organization/org-b"}}]}]}"#)
                .replacingOccurrences(of: #"{"resourceType":"Consent","#, with: #"{"resourceType":"Consent","id":"\#(cid)","#)
            let got7 = try await server.request(.put, "/fhir/Consent/\(cid)", exceptB, headers: admin).status
            XCTAssertEqual(got7, 200)
            _ = try await server.request(.post, "/fhir/Encounter", #"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: c)
            let got8 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: b).status
            XCTAssertEqual(got8, 200)
            let got9 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: c).status
            XCTAssertEqual(got9, 403, "C treats the resident but is refused")

            // Revoked: from the next request on, C (which treats the resident) reads again.
            let revoked = exceptB.replacingOccurrences(of: #""status":"active""#, with: #""status":"inactive""#)
            let got10 = try await server.request(.put, "/fhir/Consent/\(cid)", revoked, headers: admin).status
            XCTAssertEqual(got10, 200)
            let got11 = try await server.request(.get, "/fhir/Observation/\(oid)", headers: c).status
            XCTAssertEqual(got11, 200)
        }
    }

    func test_breakTheGlass_overridesARefusal_andTheResidentSeesIt() async throws {
        try await TestServer.run(development: false) { server, store in
            func client(_ facility: String?, _ role: Role, _ scopes: String) async throws -> [String: String] {
                try await clientHeaders(server, store, facility, role, scopes)
            }
            let a = try await client("org-a", .facilitySystem, "system/*.cruds")
            let admin = try await client(nil, .administrator, "system/*.cruds")
            let er = try await client("org-er", .emergencyClinician, "user/*.rs")
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: a)
            let pid = try XCTUnwrap(p.id)
            let consent = #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/\#(pid)"},"provision":{"type":"deny"}}"#
            let got12 = try await server.request(.post, "/fhir/Consent", consent, headers: admin).status
            XCTAssertEqual(got12, 201)
            let got13 = try await server.request(.get, "/fhir/Patient/\(pid)", headers: er).status
            XCTAssertEqual(got13, 403)
            var glass = er
            glass["X-Break-Glass-Reason"] = "车祸昏迷，急需既往史 unconscious after a road accident"
            let got14 = try await server.request(.get, "/fhir/Patient/\(pid)", headers: glass).status
            XCTAssertEqual(got14, 200)
            let trail = try await server.request(.get, "/fhir/AuditEvent?patient=Patient/\(pid)", headers: admin)
            let events = (trail.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"] }
            let outcomes = events.map { "\($0["outcome"]!.stringValue!) \($0["purposeOfEvent"]![0]!["coding"]![0]!["code"]!.stringValue!)" }
            XCTAssertEqual(Array(outcomes.prefix(2)), ["0 ETREAT", "4 TREAT"], "the glass broken (newest), the refusal before it")
        }
    }
}
