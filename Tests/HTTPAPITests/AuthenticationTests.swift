@testable import Access
import Crypto
import FHIRModel
import Foundation
import HTTPTypes
import JWTKit
import Store
import XCTest

/// Registers a client in the server's store and gets a token for it with its secret.
func token(_ server: TestServer, _ store: any ResourceStore, scopes: String, request: String? = nil,
           role: Role = .facilitySystem, facility: String? = "org-1") async throws -> String {
    let (client, secret) = try await ClientRegistry.register(name: facility ?? "HIS", facility: facility, role: role, scopes: scopes,
                                                             jwks: nil, in: store)
    var form = "grant_type=client_credentials&client_id=\(client.id)&client_secret=\(secret!)"
    if let request { form += "&scope=" + request.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
    let response = try await server.request(.post, "/auth/token", form, headers: ["Content-Type": "application/x-www-form-urlencoded"])
    XCTAssertEqual(response.status, 200, response.bodyText)
    XCTAssertEqual(response.header("Cache-Control"), "no-store")
    return try XCTUnwrap(response.json["access_token"]?.stringValue)
}

func bearer(_ token: String) -> [String: String] { ["Authorization": "Bearer \(token)"] }

/// Tokens at the HTTP edge: the client-credentials grant (secret and `private_key_jwt`), 401s
/// with `WWW-Authenticate`, and scopes applied by the one access decision to every route.
final class AuthenticationTests: XCTestCase {
    func test_withoutDev_everyFHIRRouteNeedsAToken_andMetadataAndDiscoveryDoNot() async throws {
        try await TestServer.run(development: false) { server, _ in
            for (method, path) in [(HTTPRequest.Method.get, "/fhir/Patient"), (.get, "/fhir/Patient/x"), (.post, "/fhir/Patient"),
                                   (.get, "/fhir/_history"), (.post, "/fhir"), (.get, "/fhir/Patient/x/$everything"),
                                   (.post, "/fhir/Patient/$match"), (.delete, "/fhir/Patient/x"), (.get, "/fhir/Patient/x/_history/1")] {
                let r = try await server.request(method, path, method == .get || method == .delete ? nil : "{}")
                XCTAssertEqual(r.status, 401, "\(method) \(path)")
                XCTAssertEqual(r.header("WWW-Authenticate"), "Bearer realm=\"huitong\"", "\(method) \(path)")
                XCTAssertEqual(r.json["resourceType"]?.stringValue, "OperationOutcome")
            }
            let metadata = try await server.request(.get, "/fhir/metadata")
            XCTAssertEqual(metadata.status, 200)
            XCTAssertEqual(metadata.json["rest"]?[0]?["security"]?["service"]?[0]?["coding"]?[0]?["code"]?.stringValue, "SMART-on-FHIR")
            XCTAssertFalse(metadata.bodyText.contains("DEVELOPMENT"))
            let smart = try await server.request(.get, "/fhir/.well-known/smart-configuration")
            XCTAssertEqual(smart.status, 200)
            XCTAssertTrue(smart.json["token_endpoint_auth_methods_supported"]?.arrayValue?.contains(.string("private_key_jwt")) ?? false)
            // A token that is not one of ours: 401 with the RFC 6750 error.
            let forged = try await server.request(.get, "/fhir/Patient", headers: bearer("eyJhbGciOiJub25lIn0.e30."))
            XCTAssertEqual(forged.status, 401)
            XCTAssertTrue(forged.header("WWW-Authenticate")?.contains("error=\"invalid_token\"") ?? false)
        }
    }

    func test_devMode_actsAsAdministratorWithoutToken_butStillRefusesBadTokens() async throws {
        try await TestServer.run(development: true) { server, _ in
            let created = try await server.request(.post, "/fhir/Patient", patientJSON())
            XCTAssertEqual(created.status, 201)
            let bad = try await server.request(.get, "/fhir/Patient", headers: bearer("not-a-token"))
            XCTAssertEqual(bad.status, 401)
            let metadata = try await server.request(.get, "/fhir/metadata")
            XCTAssertTrue(metadata.json["implementation"]?["description"]?.stringValue?.contains("DEVELOPMENT MODE") ?? false)
        }
    }

    func test_clientSecretGrant_tokenCarriesTheGrantedScopes_andScopesDecideEachInteraction() async throws {
        try await TestServer.run(development: false) { server, store in
            let admin = try await token(server, store, scopes: "system/*.cruds")
            let patient = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: bearer(admin))
            XCTAssertEqual(patient.status, 201, patient.bodyText)
            let pid = try XCTUnwrap(patient.id)
            // Asking for less than registered: only that is granted.
            let reader = try await token(server, store, scopes: "system/Patient.rs system/Observation.cruds", request: "system/Patient.rs")
            let read = try await server.request(.get, "/fhir/Patient/\(pid)", headers: bearer(reader))
            XCTAssertEqual(read.status, 200)
            // The scheme in any case, spaces around the token (RFC 7235); another scheme or no token is a 401.
            for (header, status) in [("bearer \(reader)", 200), ("BEARER   \(reader)\t", 200), ("Basic \(reader)", 401),
                                     ("Bearer", 401), ("Bearer   ", 401), ("Bearer\(reader)", 401)] {
                let r = try await server.request(.get, "/fhir/Patient/\(pid)", headers: ["Authorization": header])
                XCTAssertEqual(r.status, status, header)
                if status == 401 { XCTAssertTrue(r.headers[.wwwAuthenticate]?.contains("invalid_request") ?? false, header) }
            }
            // Two Authorization headers (even the same token twice) are one too many.
            let twice = try await server.request(.get, "/fhir/Patient/\(pid)",
                                                 repeated: [("Authorization", "Bearer \(reader)"), ("Authorization", "Bearer \(reader)")])
            XCTAssertEqual(twice.status, 401)
            XCTAssertTrue(twice.headers[.wwwAuthenticate]?.contains("invalid_request") ?? false)
            let write = try await server.request(.post, "/fhir/Observation",
                                                 #"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#, headers: bearer(reader))
            XCTAssertEqual(write.status, 403)
            XCTAssertEqual(write.json["issue"]?[0]?["code"]?.stringValue, "forbidden")
            let update = try await server.request(.put, "/fhir/Patient/\(pid)", patientJSON(id: pid), headers: bearer(reader))
            XCTAssertEqual(update.status, 403)
            // Wrong secret, unknown client, wrong grant, and a scope the client does not have.
            let (client, _) = try await ClientRegistry.register(name: "LIS", facility: "org-2", scopes: "system/Observation.rs", jwks: nil, in: store)
            for (form, status, error) in [
                ("grant_type=client_credentials&client_id=\(client.id)&client_secret=wrong", 401, "invalid_client"),
                ("grant_type=client_credentials&client_id=nobody&client_secret=x", 401, "invalid_client"),
                ("grant_type=password&client_id=\(client.id)&client_secret=x", 400, "unsupported_grant_type"),
                ("client_id=\(client.id)", 400, "invalid_request"),
            ] {
                let r = try await server.request(.post, "/auth/token", form, headers: ["Content-Type": "application/x-www-form-urlencoded"])
                XCTAssertEqual(r.status, status, form)
                XCTAssertEqual(r.json["error"]?.stringValue, error, form)
            }
        }
    }

    func test_scopes_filterIncludesAndEverything_andTheTotalCountsOnlyWhatMayBeRead() async throws {
        try await TestServer.run(development: false) { server, store in
            let admin = try await token(server, store, scopes: "system/*.cruds")
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: bearer(admin))
            let pid = try XCTUnwrap(p.id)
            for i in 0..<3 {
                let o = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"o\#(i)"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: bearer(admin))
                XCTAssertEqual(o.status, 201)
            }
            let c = try await server.request(.post, "/fhir/Condition", #"{"resourceType":"Condition","subject":{"reference":"Patient/\#(pid)"},"code":{"text":"HIV"}}"#, headers: bearer(admin))
            XCTAssertEqual(c.status, 201, c.bodyText)
            let labs = try await token(server, store, scopes: "system/Observation.rs")
            let search = try await server.request(.get, "/fhir/Observation?_include=Observation:subject&_total=accurate", headers: bearer(labs))
            XCTAssertEqual(search.status, 200, search.bodyText)
            let types = (search.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["resourceType"]?.stringValue }
            XCTAssertEqual(types, ["Observation", "Observation", "Observation"], "the subject Patient is not readable with these scopes")
            // A chain or _has into a type the token may not search is refused, not silently answered.
            let chained = try await server.request(.get, "/fhir/Observation?subject:Patient.name=张", headers: bearer(labs))
            XCTAssertEqual(chained.status, 403)
            let viewer = try await token(server, store, scopes: "system/Patient.rs system/Observation.rs")
            let has = try await server.request(.get, "/fhir/Patient?_has:Condition:subject:code=HIV", headers: bearer(viewer))
            XCTAssertEqual(has.status, 403)
            let everything = try await server.request(.get, "/fhir/Patient/\(pid)/$everything", headers: bearer(viewer))
            XCTAssertEqual(everything.status, 200, everything.bodyText)
            let seen = (everything.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["resourceType"]?.stringValue }
            XCTAssertEqual(seen.sorted(), ["Observation", "Observation", "Observation", "Patient"])
            if let total = everything.json["total"]?.numberText { XCTAssertEqual(total, "4") }
            let all = try await server.request(.get, "/fhir/Patient/\(pid)/$everything", headers: bearer(admin))
            XCTAssertTrue((all.json["entry"]?.arrayValue ?? []).contains { $0["resource"]?["resourceType"]?.stringValue == "Condition" })
            // History of everything needs wildcard access.
            let history = try await server.request(.get, "/fhir/_history", headers: bearer(viewer))
            XCTAssertEqual(history.status, 403)
        }
    }

    func test_aFacilityWritesOnlyAsItself_whateverTheBodySays() async throws {
        try await TestServer.run(development: false) { server, store in
            let his = try await token(server, store, scopes: "system/Patient.cruds system/Observation.cruds")  // facility org-1
            // Saying it is another of the platform's facilities is refused, not quietly re-attributed (ADR 017).
            let claimed = #"{"resourceType":"Patient","meta":{"source":"urn:huitong:facility:other"},"gender":"female"}"#
            let refused = try await server.request(.post, "/fhir/Patient", claimed, headers: bearer(his))
            XCTAssertEqual(refused.status, 403, refused.bodyText)
            XCTAssertEqual(refused.issueLocations, ["Patient.meta.source"])
            // Otherwise the writer's facility is set by the server: meta.source and a Patient's managing organization.
            let body = #"{"resourceType":"Patient","meta":{"source":"http://his.org-1.example/fhir"},"managingOrganization":{"reference":"Organization/other"},"gender":"female"}"#
            let created = try await server.request(.post, "/fhir/Patient", body, headers: bearer(his))
            XCTAssertEqual(created.status, 201, created.bodyText)
            XCTAssertEqual(created.json["meta"]?["source"]?.stringValue, "urn:huitong:facility:org-1")
            XCTAssertEqual(created.json["managingOrganization"]?["reference"]?.stringValue, "Organization/org-1")
            let pid = try XCTUnwrap(created.id)
            let entry = #"{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/\#(pid)"}},"request":{"method":"POST","url":"Observation"}}"#
            let claiming = #"{"resource":{"resourceType":"Observation","status":"final","code":{"text":"y"},"subject":{"reference":"Patient/\#(pid)"},"meta":{"source":"urn:huitong:facility:other"}},"request":{"method":"POST","url":"Observation"}}"#
            let tx = try await server.request(.post, "/fhir", #"{"resourceType":"Bundle","type":"transaction","entry":[\#(entry),\#(claiming)]}"#, headers: bearer(his))
            XCTAssertEqual(tx.status, 403, tx.bodyText)
            let ok = try await server.request(.post, "/fhir", #"{"resourceType":"Bundle","type":"transaction","entry":[\#(entry)]}"#, headers: bearer(his))
            XCTAssertEqual(ok.status, 200, ok.bodyText)
            let mine = try await server.request(.get, "/fhir/Observation?_source=urn:huitong:facility:org-1", headers: bearer(his))
            XCTAssertEqual(mine.json["entry"]?.arrayValue?.count, 1, "the refused transaction stored nothing")
            let theirs = try await server.request(.get, "/fhir/Observation?_source=urn:huitong:facility:other", headers: bearer(his))
            XCTAssertEqual(theirs.json["entry"]?.arrayValue?.count ?? 0, 0)
        }
    }

    func test_transaction_withOneEntryOutOfScope_isRefusedWhole() async throws {
        try await TestServer.run(development: false) { server, store in
            let writer = try await token(server, store, scopes: "system/Observation.cruds system/Patient.rs")
            let bundle = #"""
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}},
              {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}}]}
            """#
            let r = try await server.request(.post, "/fhir", bundle, headers: bearer(writer))
            XCTAssertEqual(r.status, 403, r.bodyText)
            XCTAssertEqual(r.issueLocations, ["Bundle.entry[1]"])
            let counts = try await store.resourceCounts()
            XCTAssertNil(counts["Observation"], "nothing of the refused transaction is stored")
        }
    }

    struct Assertion: JWTPayload {
        var iss: String
        var sub: String
        var aud: String
        var exp: Int
        var jti: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    func test_privateKeyJWT_grantsOnce_perAssertion_andChecksAudienceAndSignature() async throws {
        try await TestServer.run(development: false) { server, store in
            let key = ES256PrivateKey()
            let params = try XCTUnwrap(key.publicKey.parameters)
            let jwks = #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"his-key-1","x":"\#(params.x)","y":"\#(params.y)"}]}"#
            let (client, secret) = try await ClientRegistry.register(name: "HIS", facility: "org-1", scopes: "system/Patient.rs",
                                                                     jwks: jwks, in: store)
            XCTAssertNil(secret, "a client with keys gets no secret")
            let smart = try await server.request(.get, "/.well-known/smart-configuration")
            let endpoint = try XCTUnwrap(smart.json["token_endpoint"]?.stringValue)
            let signer = JWTKeyCollection()
            await signer.add(ecdsa: key, kid: "his-key-1")
            func assertion(aud: String = endpoint, jti: String = UUID().uuidString, exp: Int = Int(Date().timeIntervalSince1970) + 240,
                           with keys: JWTKeyCollection? = nil) async throws -> String {
                try await (keys ?? signer).sign(Assertion(iss: client.id, sub: client.id, aud: aud, exp: exp, jti: jti), kid: "his-key-1")
            }
            func exchange(_ jwt: String) async throws -> FHIRTestResponse {
                let form = "grant_type=client_credentials&scope=system%2FPatient.rs"
                    + "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\(jwt)"
                return try await server.request(.post, "/auth/token", form, headers: ["Content-Type": "application/x-www-form-urlencoded"])
            }
            let good = try await assertion()
            let granted = try await exchange(good)
            XCTAssertEqual(granted.status, 200, granted.bodyText)
            XCTAssertEqual(granted.json["scope"]?.stringValue, "system/Patient.rs")
            let token = try XCTUnwrap(granted.json["access_token"]?.stringValue)
            let search = try await server.request(.get, "/fhir/Patient", headers: bearer(token))
            XCTAssertEqual(search.status, 200)
            // The same assertion again is a replay.
            let replay = try await exchange(good)
            XCTAssertEqual(replay.status, 401)
            XCTAssertTrue(replay.json["error_description"]?.stringValue?.contains("replay") ?? false, replay.bodyText)
            let elsewhere = try await exchange(try await assertion(aud: "https://other.example/token"))
            XCTAssertEqual(elsewhere.status, 401)
            let longLived = try await exchange(try await assertion(exp: Int(Date().timeIntervalSince1970) + 3600))
            XCTAssertEqual(longLived.status, 401)
            let otherKey = JWTKeyCollection()
            await otherKey.add(ecdsa: ES256PrivateKey(), kid: "his-key-1")
            let forged = try await exchange(try await assertion(with: otherKey))
            XCTAssertEqual(forged.status, 401)
            XCTAssertEqual(forged.json["error"]?.stringValue, "invalid_client")
        }
    }
}
