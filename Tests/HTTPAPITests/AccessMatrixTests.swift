@testable import Access
import FHIRModel
import Foundation
import HTTPAPI
import Server
import HTTPTypes
import Hummingbird
import Store
import XCTest

/// The authorization matrix: every route the router has, and every operation the
/// CapabilityStatement lists, against each kind of caller. A route added without an entry here
/// fails `test_everyRoute_hasAnEntry`; an entry whose decision changes fails the matrix.
final class AccessMatrixTests: XCTestCase {
    enum Kind { case publicRoute, read, write }

    struct Example {
        let kind: Kind
        let method: HTTPRequest.Method
        let path: String
        var body: String? = nil
        var contentType = "application/fhir+json"
        /// What a caller that may do it gets (the decisions below lack their parameters: a 400 shows
        /// the request got past the access decision).
        var allowed: ClosedRange<Int> = 200...299
        /// Facility readers (the emergency caller works at one) may not page through history across
        /// residents: its total would show records of other facilities.
        var facilityReadersAllowed = true
        /// A clinician of another facility (no treatment relationship with the fixture resident).
        var otherFacility: Expect? = nil
        /// A resident (patient/ scopes) who is not the fixture Patient.
        var otherResident: Expect? = nil
        /// Request headers beyond the token (`If-None-Exist`, `Prefer`).
        var headers: [String: String] = [:]
        /// A batch (or a transaction's GET): entries are answered one by one, so a refusal is the
        /// entry's 403 inside a 200.
        var entries = false

        /// Defaults: reads show nothing of the fixture resident; another facility writes as itself
        /// (creates), a resident writes nothing but their own Consents.
        var expectOtherFacility: Expect { otherFacility ?? (kind == .write ? .allowed : .hidden) }
        var expectOtherResident: Expect { otherResident ?? (kind == .write ? .refused : .hidden) }
    }

    enum Expect {
        /// 403.
        case refused
        /// The example's `allowed` statuses.
        case allowed
        /// 403, or a success whose entries include none of the fixture's records.
        case hidden
        /// 404, as for what does not exist (a match the caller may not see is no match).
        case absent
        /// A write that succeeds as if the fixture did not exist: 2xx, and nothing of the fixture
        /// resident in the answer (a conditional match the caller may not see is no match).
        case hiddenWrite
        /// A batch whose entry is refused: 200, the entry's status 403.
        case entryRefused
    }

    static let observation = #"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#

    /// One request per route (keyed as `Router.routes` describes them), `{P}` the fixture Patient's
    /// id, `{O}` the fixture Observation's, `{PERSON}` the Patient's master Person.
    static let routes: [String: Example] = [
        "GET /": Example(kind: .publicRoute, method: .get, path: "/"),
        "GET /health": Example(kind: .publicRoute, method: .get, path: "/health"),
        "GET /ready": Example(kind: .publicRoute, method: .get, path: "/ready"),
        "GET /metrics": Example(kind: .publicRoute, method: .get, path: "/metrics"),
        "GET /hl7/status": Example(kind: .publicRoute, method: .get, path: "/hl7/status"),
        // Rejected HL7 messages: administrators and operators only (no facility, emergency or resident).
        "GET /hl7/rejected": Example(kind: .read, method: .get, path: "/hl7/rejected", facilityReadersAllowed: false,
                                     otherFacility: .refused, otherResident: .refused),
        "GET /hl7/rejected/{id}": Example(kind: .read, method: .get, path: "/hl7/rejected/none", allowed: 404...404,
                                          facilityReadersAllowed: false, otherFacility: .refused, otherResident: .refused),
        "GET /.well-known/jwks.json": Example(kind: .publicRoute, method: .get, path: "/.well-known/jwks.json"),
        "GET /.well-known/smart-configuration": Example(kind: .publicRoute, method: .get, path: "/.well-known/smart-configuration"),
        "GET /fhir/.well-known/smart-configuration": Example(kind: .publicRoute, method: .get, path: "/fhir/.well-known/smart-configuration"),
        "POST /auth/token": Example(kind: .publicRoute, method: .post, path: "/auth/token", body: "grant_type=client_credentials",
                                    contentType: "application/x-www-form-urlencoded"),
        "GET /fhir/metadata": Example(kind: .publicRoute, method: .get, path: "/fhir/metadata"),
        "POST /auth/login": Example(kind: .publicRoute, method: .post, path: "/auth/login", body: "username=nobody&password=x&totp=000000",
                                    contentType: "application/x-www-form-urlencoded"),
        "POST /auth/logout": Example(kind: .publicRoute, method: .post, path: "/auth/logout", body: "refresh_token=x",
                                     contentType: "application/x-www-form-urlencoded"),
        "POST /fhir": Example(kind: .write, method: .post, path: "/fhir", body: #"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":\#(observation),"request":{"method":"POST","url":"Observation"}}]}"#),
        "GET /fhir/_history": Example(kind: .read, method: .get, path: "/fhir/_history", facilityReadersAllowed: false,
                                      otherFacility: .refused, otherResident: .refused),
        "GET /fhir/{type}": Example(kind: .read, method: .get, path: "/fhir/Patient?gender=male"),
        "POST /fhir/{type}/_search": Example(kind: .read, method: .post, path: "/fhir/Patient/_search", body: "gender=male",
                                             contentType: "application/x-www-form-urlencoded"),
        "POST /fhir/{type}": Example(kind: .write, method: .post, path: "/fhir/Observation", body: observation),
        "POST /fhir/{type}/{id}": Example(kind: .read, method: .post, path: "/fhir/Patient/$match",
                                          body: #"{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","gender":"male"}}]}"#,
                                          otherResident: .refused),
        "PUT /fhir/{type}": Example(kind: .write, method: .put, path: "/fhir/Observation?code=matrix-none", body: observation),
        "DELETE /fhir/{type}": Example(kind: .write, method: .delete, path: "/fhir/Observation?code=matrix-none"),
        "GET /fhir/{type}/_history": Example(kind: .read, method: .get, path: "/fhir/Observation/_history", facilityReadersAllowed: false,
                                             otherFacility: .refused, otherResident: .refused),
        "GET /fhir/{type}/{id}": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}", otherFacility: .refused, otherResident: .refused),
        "PUT /fhir/{type}/{id}": Example(kind: .write, method: .put, path: "/fhir/Observation/{O}",
                                         body: #"{"resourceType":"Observation","id":"{O}","status":"amended","code":{"text":"x"}}"#, otherFacility: .refused),
        "PATCH /fhir/{type}/{id}": Example(kind: .write, method: .patch, path: "/fhir/Observation/{O}",
                                           body: #"[{"op":"replace","path":"/status","value":"final"}]"#, contentType: "application/json-patch+json",
                                           otherFacility: .refused),
        "PATCH /fhir/{type}": Example(kind: .write, method: .patch, path: "/fhir/Observation?_id={O}",
                                      body: #"[{"op":"replace","path":"/status","value":"final"}]"#, contentType: "application/json-patch+json",
                                      otherFacility: .absent, otherResident: .refused),
        "DELETE /fhir/{type}/{id}": Example(kind: .write, method: .delete, path: "/fhir/Observation/does-not-exist"),
        "GET /fhir/{type}/{id}/_history": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/_history", otherFacility: .refused,
                                                  otherResident: .refused),
        "GET /fhir/{type}/{id}/{operationOrCompartment}": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/Observation"),
        // Instance-level $validate: asked as the update would be (the answer is an OperationOutcome,
        // the update's refusal among its issues; nothing is stored).
        "POST /fhir/{type}/{id}/{operationOrCompartment}": Example(kind: .write, method: .post, path: "/fhir/Observation/{O}/$validate?mode=update",
                                                                  body: #"{"resourceType":"Observation","id":"{O}","status":"amended","code":{"text":"x"}}"#,
                                                                  otherFacility: .allowed),
        "GET /fhir/{type}/{id}/_history/{version}": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/_history/1", otherFacility: .refused,
                                                            otherResident: .refused),
        // E-health cards ({CARD}: a temporary card of the fixture resident). Facilities issue,
        // read, show and verify any resident's card (the resident presents it); a resident only
        // their own, and changes its status only by a loss report.
        "GET /card/keys": Example(kind: .publicRoute, method: .get, path: "/card/keys"),
        // A facility issues cards to residents it may read (registered or treated); to another
        // facility the fixture resident is no one.
        "POST /card/issue": Example(kind: .write, method: .post, path: "/card/issue", body: #"{"person":"Person/{PERSON}","temporary":true}"#,
                                    contentType: "application/json", otherFacility: .absent),
        "POST /card/verify": Example(kind: .read, method: .post, path: "/card/verify", body: #"{"code":"{CARD}:1","scene":"0101011"}"#,
                                     contentType: "application/json", otherFacility: .allowed, otherResident: .refused),
        "GET /card/{id}": Example(kind: .read, method: .get, path: "/card/{CARD}", otherFacility: .allowed, otherResident: .refused),
        // Codes are made for the resident, at the issuing facility's counter (org-1, where the
        // emergency caller works) or by an administrator.
        "GET /card/{id}/qr": Example(kind: .read, method: .get, path: "/card/{CARD}/qr", otherFacility: .refused, otherResident: .refused),
        "POST /card/{id}/{action}": Example(kind: .write, method: .post, path: "/card/{CARD}/resume", body: #"{"reason":"matrix"}"#,
                                            contentType: "application/json", allowed: 409...409),
    ]

    /// Requests for the operations the CapabilityStatement lists, by name.
    static let operations: [String: Example] = [
        "Patient/$match": routes["POST /fhir/{type}/{id}"]!,
        "Patient/$everything": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/$everything"),
        "Patient/$ihe-pix": Example(kind: .read, method: .get, path: "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:oid:2.16.156.10011.1.1|M1",
                                otherFacility: .absent, otherResident: .refused),
        "Person/$everything": Example(kind: .read, method: .get, path: "/fhir/Person/{PERSON}/$everything"),
        // The cross-facility view (ADR 024): what $everything gives the caller, grouped.
        "Patient/$record-summary": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/$record-summary"),
        "Person/$record-summary": Example(kind: .read, method: .get, path: "/fhir/Person/{PERSON}/$record-summary"),
        // $validate, listed on every type: asked as the create would be.
        // A generated OperationDefinition: read as a stored one would be.
        "OperationDefinition/{id} (generated)": Example(kind: .read, method: .get, path: "/fhir/OperationDefinition/Patient-everything"),
        "*/$validate": Example(kind: .write, method: .post, path: "/fhir/Observation/$validate?mode=create", body: observation),
        // Terminology (ADR 022): no patient data, read by anyone who may read the type; nothing is
        // loaded here, so an allowed caller is told the code system or value set is unknown.
        "CodeSystem/$lookup": Example(kind: .read, method: .get, path: "/fhir/CodeSystem/$lookup?system=urn:matrix&code=a", allowed: 404...404,
                                      otherFacility: .allowed, otherResident: .allowed),
        "CodeSystem/$subsumes": Example(kind: .read, method: .get, path: "/fhir/CodeSystem/$subsumes?system=urn:matrix&codeA=a&codeB=b",
                                        allowed: 404...404, otherFacility: .allowed, otherResident: .allowed),
        "CodeSystem/$validate-code": Example(kind: .read, method: .get, path: "/fhir/CodeSystem/$validate-code?url=urn:matrix&code=a",
                                             otherFacility: .allowed, otherResident: .allowed),
        "ValueSet/$expand": Example(kind: .read, method: .get, path: "/fhir/ValueSet/$expand?url=urn:matrix", allowed: 404...404,
                                    otherFacility: .allowed, otherResident: .allowed),
        "ConceptMap/$translate": Example(kind: .read, method: .get, path: "/fhir/ConceptMap/$translate?system=urn:matrix&code=a",
                                         otherFacility: .allowed, otherResident: .allowed),
        // A facility's data-quality report: its own (org-1), administrators and operators.
        "ConceptMap/$unmapped-codes": Example(kind: .read, method: .get, path: "/fhir/ConceptMap/$unmapped-codes?facility=org-1",
                                              otherFacility: .refused, otherResident: .refused),
        "ValueSet/$validate-code": Example(kind: .read, method: .get, path: "/fhir/ValueSet/$validate-code?url=urn:matrix&code=a",
                                           allowed: 404...404, otherFacility: .allowed, otherResident: .allowed),
        // A subscription's status and events (ADR 023): read as the Subscription is (its owner's,
        // checked per subscription); none exists here, so an allowed caller is told so.
        "Subscription/$status": Example(kind: .read, method: .get, path: "/fhir/Subscription/matrix/$status", allowed: 404...404,
                                        otherFacility: .allowed, otherResident: .allowed),
        "Subscription/$events": Example(kind: .read, method: .get, path: "/fhir/Subscription/matrix/$events?eventsSinceNumber=1",
                                        allowed: 404...404, otherFacility: .allowed, otherResident: .allowed),
        // Recognisable results (ADR 024): searched on the caller's behalf; with no catalogue loaded an
        // allowed caller is told the item is unknown (and one with no facility that it needs one).
        "Patient/$recognizable-results": Example(kind: .read, method: .get, path: "/fhir/Patient/{P}/$recognizable-results?code=http://loinc.org|718-7",
                                                 allowed: 400...400, otherFacility: .allowed, otherResident: .allowed),
        "Subscription/$get-ws-binding-token": Example(kind: .read, method: .get, path: "/fhir/Subscription/$get-ws-binding-token?id=matrix",
                                                      allowed: 404...404, otherFacility: .allowed, otherResident: .allowed),
    ]

    /// Conditional interactions and Bundle entries, each its own route through the access decision
    /// (`{O}`: the fixture Observation, which the other facility may not read or change).
    static func entry(_ type: String, _ request: String, _ resource: String? = nil) -> String {
        #"{"resourceType":"Bundle","type":"\#(type)","entry":[{"#  + (resource.map { #""resource":\#($0),"# } ?? "") + #""request":\#(request)}]}"#
    }
    static let variants: [String: Example] = [
        // A Binary in its own content type (R4 http.html#binary; ADR 026): `{B}` is bound to the fixture Patient.
        "Binary read in its own type (ITI-68)": Example(kind: .read, method: .get, path: "/fhir/Binary/{B}", otherFacility: .refused,
                                                        otherResident: .refused, headers: ["Accept": "application/pdf"]),
        "Binary version read in its own type (ADR 029)": Example(kind: .read, method: .get, path: "/fhir/Binary/{B}/_history/1",
                                                                otherFacility: .refused, otherResident: .refused,
                                                                headers: ["Accept": "application/pdf"]),
        "Binary written in its own type": Example(kind: .write, method: .post, path: "/fhir/Binary", body: "%PDF-1.7 matrix",
                                                  contentType: "application/pdf", headers: ["X-Security-Context": "Patient/{P}"]),
        "conditional create (If-None-Exist on a hidden match)": Example(
            kind: .write, method: .post, path: "/fhir/Observation", body: observation, otherFacility: .hiddenWrite,
            headers: ["If-None-Exist": "_id={O}", "Prefer": "return=representation"]),
        "conditional update (a hidden match)": Example(kind: .write, method: .put, path: "/fhir/Observation?_id={O}", body: observation,
                                                      otherFacility: .hiddenWrite),
        "conditional delete (a hidden match)": Example(kind: .write, method: .delete, path: "/fhir/Observation?_id={D1}", otherFacility: .hiddenWrite),
        "transaction entry: POST": Example(kind: .write, method: .post, path: "/fhir",
                                           body: entry("transaction", #"{"method":"POST","url":"Observation"}"#, observation)),
        "transaction entry: POST with ifNoneExist (a hidden match)": Example(
            kind: .write, method: .post, path: "/fhir",
            body: entry("transaction", #"{"method":"POST","url":"Observation","ifNoneExist":"_id={O}"}"#, observation),
            otherFacility: .hiddenWrite, headers: ["Prefer": "return=representation"]),
        "transaction entry: PUT by id": Example(
            kind: .write, method: .post, path: "/fhir",
            body: entry("transaction", #"{"method":"PUT","url":"Observation/{O}"}"#, #"{"resourceType":"Observation","id":"{O}","status":"amended","code":{"text":"x"}}"#),
            otherFacility: .refused),
        "transaction entry: conditional PUT (a hidden match)": Example(
            kind: .write, method: .post, path: "/fhir", body: entry("transaction", #"{"method":"PUT","url":"Observation?_id={O}"}"#, observation),
            otherFacility: .hiddenWrite),
        "transaction entry: DELETE by id": Example(kind: .write, method: .post, path: "/fhir",
                                                   body: entry("transaction", #"{"method":"DELETE","url":"Observation/{D2}"}"#), otherFacility: .refused),
        "transaction entry: conditional DELETE (a hidden match)": Example(
            kind: .write, method: .post, path: "/fhir", body: entry("transaction", #"{"method":"DELETE","url":"Observation?_id={D3}"}"#),
            otherFacility: .hiddenWrite),
        "transaction entry: GET": Example(kind: .read, method: .post, path: "/fhir",
                                          body: entry("transaction", #"{"method":"GET","url":"Observation/{O}"}"#),
                                          otherFacility: .entryRefused, otherResident: .entryRefused, entries: true),
        "batch entry: PUT by id": Example(
            kind: .write, method: .post, path: "/fhir",
            body: entry("batch", #"{"method":"PUT","url":"Observation/{O}"}"#, #"{"resourceType":"Observation","id":"{O}","status":"amended","code":{"text":"x"}}"#),
            otherFacility: .entryRefused, otherResident: .entryRefused, entries: true),
        "transaction entry: a resident's Consent about someone else": Example(
            kind: .write, method: .post, path: "/fhir",
            body: entry("transaction", #"{"method":"POST","url":"Consent"}"#,
                        #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/{P}"},"provision":{"type":"deny"}}"#)),
    ]

    static func decisionExample(_ name: String) -> Example {
        Example(kind: .write, method: .post, path: "/fhir/$\(name)",
                body: #"{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"matrix"}]}"#, allowed: 400...400,
                otherFacility: .refused)
    }

    func test_everyRoute_hasAnEntry() async throws {
        let folder = NSTemporaryDirectory() + "matrix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try await SQLiteStore.open(path: folder + "/huitong.sqlite")
        var configuration = PlatformConfiguration()
        configuration.cards = try testCardKeys()
        let router = PlatformServer(store: store, configuration: configuration).router()
        let registered = Set(router.routes.map { "\($0.method) \($0.path)" })
        try await store.close()
        XCTAssertEqual(registered.subtracting(Self.routes.keys).sorted(), [], "routes without an access-matrix entry")
        XCTAssertEqual(Set(Self.routes.keys).subtracting(registered).sorted(), [], "entries for routes that no longer exist")
    }

    func test_matrix_everyRouteAndOperation_againstEveryKindOfCaller() async throws {
        try await TestServer.run(development: false) { server, store in
            let tokens = server.tokens
            func mint(_ role: Role, _ scopes: String, now: Date = Date(), facility: String? = "org-1", patient: String? = nil) async throws -> String {
                try await tokens.issue(for: Principal(kind: patient == nil ? .client : .user, subject: "matrix-\(role.rawValue)", role: role,
                                                      facility: facility, scopes: SMARTScope.parseList(scopes), patient: patient), now: now).token
            }
            let admin = try await mint(.administrator, "system/*.cruds")
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "M1"), headers: ["Authorization": "Bearer \(admin)"])
            let o = try await server.request(.post, "/fhir/Observation", Self.observation, headers: ["Authorization": "Bearer \(admin)"])
            let other = try await server.request(.post, "/fhir/Patient", patientJSON(family: "李", given: "娜", identifier: "M2"),
                                                 headers: ["Authorization": "Bearer \(admin)"])
            let pid = try XCTUnwrap(p.id), oid = try XCTUnwrap(o.id), otherID = try XCTUnwrap(other.id)
            let b = try await server.request(.post, "/fhir/Binary", #"{"resourceType":"Binary","contentType":"application/pdf","securityContext":{"reference":"Patient/\#(pid)"},"data":"JVBERi0xLjc="}"#,
                                             headers: ["Authorization": "Bearer \(admin)"])
            let bid = try XCTUnwrap(b.id, b.bodyText)
            // Records the destructive examples delete (the permitted caller, last, does).
            var doomed: [String] = []
            for _ in 1...3 {
                let made = try await server.request(.post, "/fhir/Observation", Self.observation, headers: ["Authorization": "Bearer \(admin)"])
                doomed.append(try XCTUnwrap(made.id))
            }
            let person = try await server.request(.get, "/fhir/Person?link=Patient/\(pid)", headers: ["Authorization": "Bearer \(admin)"])
            let personID = try XCTUnwrap(person.json["entry"]?[0]?["resource"]?["id"]?.stringValue)
            let card = try await server.request(.post, "/card/issue", #"{"person":"Person/\#(personID)","temporary":true}"#,
                                                headers: ["Authorization": "Bearer \(admin)"])
            let cardID = try XCTUnwrap(card.json["id"]?.stringValue, card.bodyText)
            let (otherKid, otherPem) = try SigningKey.generate()
            let foreign = try await TokenAuthority(keys: [try SigningKey(kid: otherKid, pem: otherPem)])
            let callers: [(name: String, headers: [String: String])] = [
                ("no token", [:]),
                ("expired token", ["Authorization": "Bearer \(try await mint(.administrator, "system/*.cruds", now: Date().addingTimeInterval(-3600)))"]),
                ("wrong signature", ["Authorization": "Bearer \(try await foreign.issue(for: Principal(kind: .client, subject: "x", role: .administrator, scopes: SMARTScope.parseList("system/*.cruds"))).token)"]),
                ("wrong scope", ["Authorization": "Bearer \(try await mint(.facilitySystem, "system/Basic.cruds"))"]),
                ("other facility", ["Authorization": "Bearer \(try await mint(.clinician, "user/*.cruds", facility: "org-2"))"]),
                ("resident of another patient", ["Authorization": "Bearer \(try await mint(.resident, "patient/*.rs patient/Consent.cu", facility: nil, patient: "Patient/\(otherID)"))"]),
                ("emergency with break-glass", ["Authorization": "Bearer \(try await mint(.emergencyClinician, "user/*.rs"))",
                                                "X-Break-Glass-Reason": "matrix: unconscious patient"]),
                // Last: its writes (deletions among them) must not change what the others meet.
                ("permitted", ["Authorization": "Bearer \(admin)"]),
            ]
            var examples = Self.routes.map { ("route \($0.key)", $0.value) } + Self.operations.map { ("operation \($0.key)", $0.value) }
                + Self.variants.map { ("\($0.key)", $0.value) }
            for op in MasterIndexOperationsNames.all { examples.append(("operation $\(op)", Self.decisionExample(op))) }
            // Recognition statistics (ADR 024): aggregates, a facility's own; a resident has none.
            examples.append(("operation $recognition-statistics", Example(kind: .read, method: .get, path: "/fhir/$recognition-statistics",
                                                                          otherFacility: .allowed, otherResident: .refused)))
            // The region's recognition lists: loaded by administrators (a list missing its columns: 400
            // past the decision, nothing loaded), read by anyone who reads terminology.
            for op in ["load-catalogue", "load-qc"] {
                examples.append(("operation $\(op)", Example(kind: .write, method: .post, path: "/fhir/$\(op)",
                                                             body: #"{"resourceType":"Parameters","parameter":[{"name":"csv","valueString":"system,code\n"}]}"#,
                                                             allowed: 400...400, otherFacility: .refused)))
            }
            examples.append(("operation $qc-passes", Example(kind: .read, method: .get, path: "/fhir/$qc-passes")))
            var failures: [String] = []
            for (label, example) in examples.sorted(by: { $0.0 < $1.0 }) {
                func fill(_ text: String) -> String {
                    text.replacingOccurrences(of: "{D1}", with: doomed[0]).replacingOccurrences(of: "{D2}", with: doomed[1])
                        .replacingOccurrences(of: "{D3}", with: doomed[2]).replacingOccurrences(of: "{CARD}", with: cardID).replacingOccurrences(of: "{PERSON}", with: personID).replacingOccurrences(of: "{P}", with: pid)
                        .replacingOccurrences(of: "{O}", with: oid).replacingOccurrences(of: "{B}", with: bid)
                }
                let path = fill(example.path)
                let body = example.body.map(fill)
                for caller in callers {
                    var headers = caller.headers
                    if body != nil { headers["Content-Type"] = example.contentType }
                    for (k, v) in example.headers { headers[k] = fill(v) }
                    let r = try await server.request(example.method, path, body, headers: headers)
                    let expected: String
                    let ok: Bool
                    // A refusal: the 403, or for entries answered one by one the entry's 403.
                    let refused = example.entries
                        ? r.status == 200 && (r.json["entry"]?[0]?["response"]?["status"]?.stringValue ?? "").hasPrefix("403")
                        : r.status == 403
                    switch (example.kind, caller.name) {
                    case (.publicRoute, _):
                        expected = "no bearer token asked for"
                        ok = r.status != 403 && !(r.header("WWW-Authenticate") ?? "").hasPrefix("Bearer")
                    case (_, "no token"), (_, "expired token"), (_, "wrong signature"):
                        expected = "401 with WWW-Authenticate"; ok = r.status == 401 && r.header("WWW-Authenticate") != nil
                    case (_, "wrong scope"):
                        expected = "403"; ok = refused
                    case (.read, "emergency with break-glass") where !example.facilityReadersAllowed:
                        expected = "403"; ok = refused
                    case (_, "other facility"), (_, "resident of another patient"):
                        switch caller.name == "other facility" ? example.expectOtherFacility : example.expectOtherResident {
                        case .refused: expected = "403"; ok = refused
                        case .absent: expected = "404"; ok = r.status == 404
                        case .hiddenWrite:
                            expected = "2xx as if the fixture did not exist, nothing of it shown"
                            // (An echo of the caller's own query is no disclosure: resources are.)
                            let shown = [r.json["id"]?.stringValue] + (r.json["entry"]?.arrayValue ?? []).map { $0["resource"]?["id"]?.stringValue }
                            ok = (200...299).contains(r.status) && Set(shown.compactMap { $0 }).isDisjoint(with: [oid, pid] + doomed)
                        case .entryRefused:
                            expected = "200 with the entry refused (403)"; ok = refused
                        case .allowed: expected = "allowed: \(example.allowed)"; ok = example.allowed.contains(r.status)
                        case .hidden:
                            let shown = Set((r.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue })
                            expected = "403, or nothing of the fixture resident"
                            ok = r.status == 403 || ((200...299).contains(r.status) && shown.isDisjoint(with: [pid, oid, personID]))
                        }
                    case (_, "permitted"), (.read, "emergency with break-glass"):
                        expected = "allowed: \(example.allowed)"; ok = example.allowed.contains(r.status)
                    default:  // an emergency reader may not write
                        expected = "403"; ok = refused
                    }
                    if !ok { failures.append("\(label) as \(caller.name): \(r.status), expected \(expected) — \(r.bodyText.prefix(160))") }
                }
            }
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
            // Every operation the CapabilityStatement names is in the matrix.
            let metadata = try await server.request(.get, "/fhir/metadata")
            let rest = metadata.json["rest"]?[0]
            var listed = Set((rest?["operation"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue.map { "operation $" + $0 } })
            for resource in rest?["resource"]?.arrayValue ?? [] {
                let type = resource["type"]?.stringValue ?? ""
                for op in resource["operation"]?.arrayValue ?? [] {
                    let name = op["name"]?.stringValue ?? ""
                    listed.insert("operation \(name == "validate" ? "*" : type)/$\(name)")
                }
            }
            XCTAssertEqual(listed.subtracting(examples.map(\.0)).sorted(), [], "operations without an access-matrix entry")
        }
    }
}

/// The reviewers' decision operations, as the CapabilityStatement lists them.
enum MasterIndexOperationsNames {
    static let all = ["empi-link", "empi-not-match", "empi-unlink", "empi-merge", "empi-unmerge"]
}
