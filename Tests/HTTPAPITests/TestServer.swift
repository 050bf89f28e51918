import Access
import FHIRModel
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HealthCard
import HummingbirdTesting
import Identity
import Platform
import Server
import Cards
import Store
import StoreTestSupport
import XCTest

/// A response as the tests read it: status, headers and the body parsed as JSON.
struct FHIRTestResponse {
    let status: Int
    let headers: HTTPFields
    let bodyText: String

    var json: JSON { (try? JSONParser.parse(bodyText)) ?? .null }
    func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }
    var id: String? { json["id"]?.stringValue }
    var versionId: String? { json["meta"]?["versionId"]?.stringValue }
    /// `expression` of every OperationOutcome issue.
    var issueLocations: [String] {
        (json["issue"]?.arrayValue ?? []).flatMap { $0["expression"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
    }
}

/// Drives the real application in-process (Hummingbird's router test client) over a fresh store,
/// once per storage backend (SQLite; PostgreSQL when `HUITONG_TEST_POSTGRES_URL` is set).
struct TestServer {
    let client: any TestClientProtocol
    /// The server's token authority (a key made for this run), to mint tokens as `/auth/token` would.
    let tokens: TokenAuthority
    /// The server's identifier keyring (made for this run): ID and phone numbers are stored encrypted.
    let identifiers: IdentifierProtection
    /// The e-health card keys: the national scheme's example root key, a new offline-code key.
    let cards: CardKeyring

    func request(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
                 headers: [String: String] = [:], repeated: [(String, String)] = []) async throws -> FHIRTestResponse {
        var fields = HTTPFields()
        if body != nil { fields[.contentType] = "application/fhir+json" }
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        // Fields appended as they are (a name may come twice).
        for (k, v) in repeated { fields.append(HTTPField(name: HTTPField.Name(k)!, value: v)) }
        return try await client.execute(uri: uri, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) }) { r in
            FHIRTestResponse(status: Int(r.status.code), headers: r.headers, bodyText: String(buffer: r.body))
        }
    }

    /// Runs `body` against a new server with an empty database, on every available backend.
    /// `development` (as `huitong serve --dev`): requests without a token act as an administrator.
    static func run(maxBodyBytes: Int = 20 * 1024 * 1024, matching: MatchRules? = .defaults, development: Bool = true,
                    rateLimits: RateLimits = RateLimits(), cardSettings: CardSettings = CardSettings(),
                    operations: OperationRegistry = .all,
                    _ body: @escaping @Sendable (TestServer, any ResourceStore) async throws -> Void) async throws {
        try await withEachBackend { test in
            let (kid, pem) = try SigningKey.generate()
            let tokens = try await TokenAuthority(keys: [try SigningKey(kid: kid, pem: pem)])
            var configuration = PlatformConfiguration(maxBodyBytes: maxBodyBytes, matching: matching, tokens: tokens,
                                                                 development: development)
            configuration.rateLimits = rateLimits
            // As `huitong serve` does: ID and phone numbers encrypted at rest.
            let identifiers = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
            configuration.identifiers = identifiers
            let cards = try testCardKeys()
            configuration.cards = cards
            configuration.cardSettings = cardSettings
            configuration.operations = operations
            let router = PlatformServer(store: test.store, configuration: configuration).router()
            let app = Application(router: router)
            try await app.test(.router) { client in
                try await body(TestServer(client: client, tokens: tokens, identifiers: identifiers, cards: cards), test.store)
            }
        }
    }
}

/// Card keys for a test server: the root key of the national scheme's example.
func testCardKeys() throws -> CardKeyring {
    CardKeyring(root: try CardRootKey(fileText: "0123456789ABCDEFFEDCBA9876543210"), offline: try OfflineCardKeys(pems: [OfflineCardKeys.newPEM()]))
}

func patientJSON(family: String = "张", given: String = "伟", identifier: String? = nil, id: String? = nil) -> String {
    var members = ["\"resourceType\":\"Patient\"", "\"name\":[{\"family\":\"\(family)\",\"given\":[\"\(given)\"]}]", "\"gender\":\"male\""]
    if let id { members.append("\"id\":\"\(id)\"") }
    if let identifier { members.append("\"identifier\":[{\"system\":\"urn:oid:2.16.156.10011.1.1\",\"value\":\"\(identifier)\"}]") }
    return "{" + members.joined(separator: ",") + "}"
}

