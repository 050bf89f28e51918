import Access
import Crypto
import FHIRModel
import Foundation
import HealthCard
import HTTPTypes
import Identity
import Platform
import Cards
import Store
import Synchronization
import XCTest

/// A clock the tests move (dynamic codes expire).
final class TestClock: Sendable {
    let offset = Mutex<Double>(0)
    func advance(_ seconds: Double) { offset.withLock { $0 += seconds } }
    var settings: CardSettings {
        var s = CardSettings()
        s.clock = { [self] in Date().timeIntervalSince1970 + self.offset.withLock { $0 } }
        return s
    }
}

/// E-health cards over HTTP: issued for the master Person with the national scheme's ids, shown as
/// static, dynamic and offline codes, verified at any facility (which gets its own linked Patient),
/// refused when expired, over-used, altered, suspended or cancelled, every outcome audited.
final class HealthCardRoutesTests: XCTestCase {
    /// The national scheme's example resident (证件类型 01, 11010020171225006X).
    static let exampleID = "11010020171225006X"

    struct Fixture {
        let server: TestServer
        let store: any ResourceStore
        let issuer: [String: String]
        let person: String
        let card: String
    }

    func withIssuedCard(_ settings: CardSettings = CardSettings(),
                        _ body: @escaping @Sendable (Fixture) async throws -> Void) async throws {
        try await TestServer.run(development: false, cardSettings: settings) { server, store in
            let issuer = try await clientHeaders(server, store, "city-hospital")
            let p = try await server.request(.post, "/fhir/Patient", registration(family: "王", given: "小明", birth: "2017-12-25",
                                                                                  id: Self.exampleID, mrn: "C1", facility: "city-hospital",
                                                                                  phone: "13800138000"), headers: issuer)
            XCTAssertEqual(p.status, 201, p.bodyText)
            let master = try await server.request(.get, "/fhir/Person?link=Patient/\(p.id!)", headers: issuer)
            let person = try XCTUnwrap(master.json["entry"]?[0]?["resource"]?["id"]?.stringValue, master.bodyText)
            let issued = try await server.request(.post, "/card/issue", #"{"patient":"Patient/\#(p.id!)"}"#, headers: issuer)
            XCTAssertEqual(issued.status, 201, issued.bodyText)
            let card = try XCTUnwrap(issued.json["id"]?.stringValue)
            try await body(Fixture(server: server, store: store, issuer: issuer, person: person, card: card))
        }
    }

    static func verify(_ f: Fixture, _ code: String, scene: String = "0101011", headers: [String: String]) async throws -> FHIRTestResponse {
        try await f.server.request(.post, "/card/verify", #"{"code":"\#(code)","scene":"\#(scene)"}"#, headers: headers)
    }

    static func dynamicCode(_ f: Fixture, headers: [String: String]? = nil) async throws -> String {
        let r = try await f.server.request(.get, "/card/\(f.card)/qr", headers: headers ?? f.issuer)
        XCTAssertEqual(r.status, 200, r.bodyText)
        return r.json["text"]?.stringValue ?? ""
    }

    static func refusal(_ r: FHIRTestResponse) -> String? {
        r.json["issue"]?[0]?["details"]?["coding"]?[0]?["code"]?.stringValue
    }

    /// The card-verify audit events: (outcome, reason) in order.
    static func verifications(_ store: any ResourceStore) async throws -> [(outcome: String, detail: String)] {
        try await store.auditEvents(after: 0, limit: 10_000).compactMap { e -> (String, String)? in
            guard case .object(let o)? = try? JSONParser.parse(e.content), o["op"]?.stringValue == "card-verify" else { return nil }
            return (o["o"]?.stringValue ?? "", o["od"]?.stringValue ?? "")
        }
    }

    func test_issue_derivesTheNationalIDs_andTheCardStaysOnTheMasterPerson() async throws {
        try await withIssuedCard { f in
            // The national scheme's example: root key 0123…3210, document 01 / 11010020171225006X.
            XCTAssertEqual(f.card, "98FF9F2C05145CB9305E9D8A57E072BB51180CA49E5BE5E9D41BCE3A9A571928")
            let read = try await f.server.request(.get, "/card/\(f.card)", headers: f.issuer)
            XCTAssertEqual(read.json["masterIndexID"]?.stringValue, "ABD17E7ED399EF68AB5660155D6E226D2C92EAC3254A4A66BED83AED0ADA1E9E")
            XCTAssertEqual(read.json["person"]?.stringValue, "Person/\(f.person)")
            XCTAssertEqual(read.json["status"]?.stringValue, "normal")
            // Issuing again returns the same card.
            let again = try await f.server.request(.post, "/card/issue", #"{"person":"Person/\#(f.person)"}"#, headers: f.issuer)
            XCTAssertEqual(again.status, 200, again.bodyText)
            XCTAssertEqual(again.json["id"]?.stringValue, f.card)
            // Searchable on the Person, and kept when the master index rewrites it for a new link.
            let county = try await clientHeaders(f.server, f.store, "county-clinic")
            let other = try await f.server.request(.post, "/fhir/Patient", registration(family: "王", given: "小明", birth: "2017-12-25",
                                                                                       id: Self.exampleID, mrn: "K9", facility: "county-clinic"),
                                                   headers: county)
            XCTAssertEqual(other.status, 201)
            let found = try await f.server.request(.get, "/fhir/Person?identifier=\(IdentifierSystems.healthCard)|\(f.card)", headers: f.issuer)
            XCTAssertEqual(found.json["entry"]?.arrayValue?.count, 1, found.bodyText)
            let person = found.json["entry"]?[0]?["resource"]
            XCTAssertEqual(person?["id"]?.stringValue, f.person)
            XCTAssertEqual(person?["link"]?.arrayValue?.count, 2, "both Patients linked")
            // Bad requests say where.
            let bad = try await f.server.request(.post, "/card/issue", #"{"person":"Person/\#(f.person)","documentNumber":"110100201712250060"}"#,
                                                 headers: f.issuer)
            XCTAssertEqual(bad.status, 400, bad.bodyText)
            XCTAssertEqual(bad.issueLocations, ["documentNumber"])
            XCTAssertFalse(bad.bodyText.contains("110100201712250060"), "the number is not echoed in clear")
        }
    }

    func test_dynamicCode_atAnotherFacility_givesItsOwnLinkedPatient_andIsRefusedWhenOverUsedAlteredOrExpired() async throws {
        let clock = TestClock()
        try await withIssuedCard(clock.settings) { f in
            let township = try await clientHeaders(f.server, f.store, "township-clinic")
            let code = try await Self.dynamicCode(f)
            XCTAssertTrue(code.hasPrefix(f.card + ":0:"), code)
            let first = try await Self.verify(f, code, headers: township)
            XCTAssertEqual(first.status, 200, first.bodyText)
            XCTAssertEqual(first.json["outcome"]?.stringValue, "accepted")
            XCTAssertEqual(first.json["person"]?.stringValue, "Person/\(f.person)")
            XCTAssertEqual(first.json["resident"]?["name"]?.stringValue, "王小明")
            XCTAssertEqual(first.json["resident"]?["birthDate"]?.stringValue, "2017-12-25")
            XCTAssertEqual(first.json["resident"]?["idNumber"]?.stringValue, "1101**********006X", "another facility sees the number masked")
            XCTAssertEqual(first.json["scene"]?["display"]?.stringValue, "预约挂号")
            XCTAssertEqual(first.json["code"]?["usesLeft"]?.numberText, "2")
            XCTAssertEqual(first.json["patientCreated"]?.boolValue, true)
            // The new Patient is the township clinic's, linked to the same master Person.
            let patient = try XCTUnwrap(first.json["patient"]?.stringValue)
            let own = try await f.server.request(.get, "/fhir/\(patient)", headers: township)
            XCTAssertEqual(own.status, 200)
            XCTAssertEqual(own.json["meta"]?["source"]?.stringValue, "urn:huitong:facility:township-clinic")
            let master = try await f.server.request(.get, "/fhir/Person?link=\(patient)", headers: township)
            XCTAssertEqual(master.json["entry"]?[0]?["resource"]?["id"]?.stringValue, f.person, "linked by the master index")
            // The second and third uses find that Patient; the fourth is over the limit.
            let second = try await Self.verify(f, code, scene: "0101051", headers: township)
            XCTAssertEqual(second.json["patient"]?.stringValue, patient)
            XCTAssertEqual(second.json["patientCreated"]?.boolValue, false)
            let third = try await Self.verify(f, code, headers: f.issuer)
            XCTAssertEqual(third.json["code"]?["usesLeft"]?.numberText, "0")
            let fourth = try await Self.verify(f, code, headers: township)
            XCTAssertEqual(fourth.status, 422)
            XCTAssertEqual(Self.refusal(fourth), "over-used")
            // An altered validity does not decrypt under the card's key.
            var altered = Array(try await Self.dynamicCode(f))
            altered[altered.count - 1] = altered[altered.count - 1] == "0" ? "1" : "0"
            let tampered = try await Self.verify(f, String(altered), headers: township)
            XCTAssertEqual(Self.refusal(tampered), "tampered", tampered.bodyText)
            // Another card's id with this card's token: not this card's key either.
            let unknown = try await Self.verify(f, String(repeating: "A", count: 64) + ":1", headers: township)
            XCTAssertEqual(Self.refusal(unknown), "unknown-card")
            let malformed = try await Self.verify(f, "hello", headers: township)
            XCTAssertEqual(malformed.status, 400)
            XCTAssertEqual(malformed.issueLocations, ["code"])
            // A code past its minute is expired. (Codes made in the same second are the same code:
            // the validity has whole seconds.)
            clock.advance(1)
            let fresh = try await Self.dynamicCode(f)
            clock.advance(61)
            let expired = try await Self.verify(f, fresh, headers: township)
            XCTAssertEqual(expired.status, 422)
            XCTAssertEqual(Self.refusal(expired), "expired", expired.bodyText)
            XCTAssertEqual(expired.json["issue"]?[0]?["code"]?.stringValue, "expired")
            // Every outcome is audited, refusals with their reason.
            let events = try await Self.verifications(f.store)
            XCTAssertEqual(events.map(\.outcome), ["0", "0", "0", "4", "4", "4", "4", "4"])
            XCTAssertEqual(events.filter { $0.outcome == "4" }.map { String($0.detail.prefix { $0 != ":" }) },
                           ["over-used", "tampered", "unknown-card", "malformed", "expired"])
        }
    }

    func test_suspendResumeCancel_andReissueRevokesEarlierCodes() async throws {
        try await withIssuedCard { f in
            let clinic = try await clientHeaders(f.server, f.store, "township-clinic")
            let staticCode = f.card + ":1"
            let before = try await Self.dynamicCode(f)
            let noReason = try await f.server.request(.post, "/card/\(f.card)/suspend", "{}", headers: f.issuer)
            XCTAssertEqual(noReason.status, 400)
            let suspended = try await f.server.request(.post, "/card/\(f.card)/suspend", #"{"reason":"挂失: phone lost"}"#, headers: f.issuer)
            XCTAssertEqual(suspended.json["status"]?.stringValue, "suspended", suspended.bodyText)
            let refused = try await Self.verify(f, staticCode, headers: clinic)
            XCTAssertEqual(Self.refusal(refused), "suspended")
            let noCode = try await f.server.request(.get, "/card/\(f.card)/qr", headers: f.issuer)
            XCTAssertEqual(noCode.status, 409, "a suspended card shows no code")
            let reissued = try await f.server.request(.post, "/card/\(f.card)/reissue", #"{"reason":"补发"}"#, headers: f.issuer)
            XCTAssertEqual(reissued.json["status"]?.stringValue, "normal", reissued.bodyText)
            let old = try await Self.verify(f, before, headers: clinic)
            XCTAssertEqual(Self.refusal(old), "revoked", "a code made before the re-issue")
            let accepted = try await Self.verify(f, try await Self.dynamicCode(f), headers: clinic)
            XCTAssertEqual(accepted.status, 200, accepted.bodyText)
            let cancelled = try await f.server.request(.post, "/card/\(f.card)/cancel", #"{"reason":"deceased"}"#, headers: f.issuer)
            XCTAssertEqual(cancelled.json["status"]?.stringValue, "cancelled")
            XCTAssertEqual(cancelled.json["history"]?.arrayValue?.compactMap { $0["action"]?.stringValue },
                           ["issue", "suspend", "reissue", "cancel"])
            let after = try await Self.verify(f, staticCode, headers: clinic)
            XCTAssertEqual(Self.refusal(after), "cancelled")
            let resume = try await f.server.request(.post, "/card/\(f.card)/resume", headers: f.issuer)
            XCTAssertEqual(resume.status, 409, resume.bodyText)
            // The Person keeps the cancelled card as an old identifier.
            let person = try await f.server.request(.get, "/fhir/Person/\(f.person)", headers: f.issuer)
            let card = (person.json["identifier"]?.arrayValue ?? []).first { $0["value"]?.stringValue == f.card }
            XCTAssertEqual(card?["use"]?.stringValue, "old")
            // Status changes are audited.
            let ops = try await f.store.auditEvents(after: 0, limit: 10_000).compactMap { e -> String? in
                guard case .object(let o)? = try? JSONParser.parse(e.content) else { return nil }
                return o["op"]?.stringValue
            }
            for op in ["card-issue", "card-suspend", "card-reissue", "card-cancel"] { XCTAssertTrue(ops.contains(op), op) }
        }
    }

    /// A restarted embedded server does not know how often earlier codes were used, so it refuses
    /// them; on PostgreSQL the store counts, so they keep their remaining uses on any node.
    func test_dynamicCodeUses_surviveARestart_orTheCodeIsRefused() async throws {
        try await withIssuedCard { f in
            let code = try await Self.dynamicCode(f)
            let first = try await Self.verify(f, code, headers: f.issuer)
            XCTAssertEqual(first.json["code"]?["usesLeft"]?.numberText, "2", first.bodyText)
            let service = FHIRService(store: f.store, pipeline: IngestPipeline(protection: f.server.identifiers))
                .acting(as: Principal(kind: .client, subject: "scanner", role: .facilitySystem, facility: "city-hospital",
                                      scopes: SMARTScope.parseList("system/*.cruds")))
            let restarted = HealthCardService(service: service, keys: f.server.cards, uses: HealthCardService.CodeUses(now: Date().timeIntervalSince1970 + 2))
            let body = JSON.object(JSONObject([("code", .string(code)), ("scene", .string("0101011"))]))
            if f.store.hasOtherWriters {
                let again = try await restarted.verify(body)
                XCTAssertEqual(again["code"]?["usesLeft"]?.numberText, "1", "the store counted the first use")
            } else {
                do {
                    _ = try await restarted.verify(body)
                    XCTFail("a code made before the restart is refused")
                } catch let error as FHIRError {
                    XCTAssertEqual(error.category, .businessRule)
                    XCTAssertEqual(error.issues.first?.details?.code, "made-before-restart")
                }
            }
        }
    }

    func test_offlineCode_verifiesWithThePublishedKeys_andOnline() async throws {
        try await withIssuedCard { f in
            let r = try await f.server.request(.get, "/card/\(f.card)/qr?kind=offline", headers: f.issuer)
            let token = try XCTUnwrap(r.json["text"]?.stringValue, r.bodyText)
            XCTAssertLessThanOrEqual(token.utf8.count, 271, "fits a version-10 QR code at level L")
            // A verifier without the platform: the JWK Set and ES256, nothing of Huitong's code.
            let jwks = try await f.server.request(.get, "/card/keys")
            let key = try XCTUnwrap(jwks.json["keys"]?[0])
            func b64(_ s: String) -> Data {
                var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                while t.count % 4 != 0 { t += "=" }
                return Data(base64Encoded: t)!
            }
            let publicKey = try P256.Signing.PublicKey(rawRepresentation: b64(key["x"]!.stringValue!) + b64(key["y"]!.stringValue!))
            let parts = token.split(separator: ".").map(String.init)
            let signature = try P256.Signing.ECDSASignature(rawRepresentation: b64(parts[2]))
            XCTAssertTrue(publicKey.isValidSignature(signature, for: Data((parts[0] + "." + parts[1]).utf8)))
            let claims = try XCTUnwrap(JSONSerialization.jsonObject(with: b64(parts[1])) as? [String: Any])
            XCTAssertEqual(claims["sub"] as? String, f.card)
            let header = try XCTUnwrap(JSONSerialization.jsonObject(with: b64(parts[0])) as? [String: Any])
            XCTAssertEqual(header["kid"] as? String, key["kid"]?.stringValue)
            // Online too; an altered claim is refused.
            let clinic = try await clientHeaders(f.server, f.store, "village-clinic")
            let ok = try await Self.verify(f, token, headers: clinic)
            XCTAssertEqual(ok.json["code"]?["kind"]?.stringValue, "offline", ok.bodyText)
            let forged = parts[0] + "." + Data(#"{"sub":"\#(f.card)","exp":9999999999}"#.utf8).base64EncodedString()
                .replacingOccurrences(of: "=", with: "") + "." + parts[2]
            let refused = try await Self.verify(f, forged, headers: clinic)
            XCTAssertEqual(Self.refusal(refused), "tampered", refused.bodyText)
            // Images of the code.
            let png = try await f.server.request(.get, "/card/\(f.card)/qr?format=png", headers: f.issuer)
            XCTAssertEqual(png.header("Content-Type"), "image/png")
            XCTAssertEqual(png.header("Cache-Control"), "no-store")
            let svg = try await f.server.request(.get, "/card/\(f.card)/qr?format=svg&kind=static", headers: f.issuer)
            XCTAssertTrue(svg.bodyText.contains("<svg"), svg.bodyText)
        }
    }

    func test_temporaryCard_isReplacedByTheRegularOne() async throws {
        try await TestServer.run(development: false) { server, store in
            let hospital = try await clientHeaders(server, store, "maternity")
            // A newborn without an ID number yet.
            let baby = try await server.request(.post, "/fhir/Patient", registration(family: "李", given: "宝宝", birth: "2026-11-20", mrn: "B1",
                                                                                   facility: "maternity"), headers: hospital)
            let none = try await server.request(.post, "/card/issue", #"{"patient":"Patient/\#(baby.id!)"}"#, headers: hospital)
            XCTAssertEqual(none.status, 422, none.bodyText)
            let temporary = try await server.request(.post, "/card/issue", #"{"patient":"Patient/\#(baby.id!)","temporary":true}"#, headers: hospital)
            XCTAssertEqual(temporary.status, 201, temporary.bodyText)
            XCTAssertEqual(temporary.json["temporary"]?.boolValue, true)
            XCTAssertEqual(temporary.json["documentType"]?.stringValue, "99")
            let temporaryID = try XCTUnwrap(temporary.json["id"]?.stringValue)
            let again = try await server.request(.post, "/card/issue", #"{"patient":"Patient/\#(baby.id!)","temporary":true}"#, headers: hospital)
            XCTAssertEqual(again.status, 200, "one temporary card at a time")
            XCTAssertEqual(again.json["id"]?.stringValue, temporaryID)
            let ok = try await server.request(.post, "/card/verify", #"{"code":"\#(temporaryID):1","scene":"0101012"}"#, headers: hospital)
            XCTAssertEqual(ok.status, 200, ok.bodyText)
            // The ID number arrives: the regular card replaces the temporary one.
            let id = residentID("2026-11-20", 12, region: "110105")
            let regular = try await server.request(.post, "/card/issue", #"{"patient":"Patient/\#(baby.id!)","documentType":"01","documentNumber":"\#(id)"}"#,
                                                   headers: hospital)
            XCTAssertEqual(regular.status, 201, regular.bodyText)
            XCTAssertEqual(regular.json["replaced"]?[0]?.stringValue, temporaryID)
            let old = try await server.request(.post, "/card/verify", #"{"code":"\#(temporaryID):1","scene":"0101012"}"#, headers: hospital)
            XCTAssertEqual(Self.refusal(old), "cancelled")
        }
    }

    func test_aResident_showsAndSuspendsTheirOwnCard_only() async throws {
        try await withIssuedCard { f in
            let owner = try await f.server.tokens.issue(for: Principal(kind: .user, subject: "wang", role: .resident,
                                                                       scopes: SMARTScope.parseList("patient/*.rs"), patient: "Person/\(f.person)")).token
            let stranger = try await f.server.tokens.issue(for: Principal(kind: .user, subject: "li", role: .resident,
                                                                          scopes: SMARTScope.parseList("patient/*.rs"), patient: "Person/someone-else")).token
            let shown = try await f.server.request(.get, "/card/\(f.card)/qr", headers: bearer(owner))
            XCTAssertEqual(shown.status, 200, shown.bodyText)
            let notTheirs = try await f.server.request(.get, "/card/\(f.card)/qr", headers: bearer(stranger))
            XCTAssertEqual(notTheirs.status, 403)
            let verify = try await Self.verify(f, f.card + ":1", headers: bearer(owner))
            XCTAssertEqual(verify.status, 403, "residents do not verify cards")
            let lost = try await f.server.request(.post, "/card/\(f.card)/suspend", #"{"reason":"挂失"}"#, headers: bearer(owner))
            XCTAssertEqual(lost.json["status"]?.stringValue, "suspended", lost.bodyText)
            let resume = try await f.server.request(.post, "/card/\(f.card)/resume", "{}", headers: bearer(owner))
            XCTAssertEqual(resume.status, 403, "resuming is done at a facility, with the resident present")
            let cdc = try await clientHeaders(f.server, f.store, "cdc", .cdcStaff)
            let byCDC = try await f.server.request(.get, "/card/\(f.card)", headers: cdc)
            XCTAssertEqual(byCDC.status, 403)
        }
    }
}
