import Crypto
import FHIRModel
import Foundation
import JWTKit
import Store

/// A facility system registered for OAuth2 client credentials (SMART Backend Services).
public struct ClientRegistration: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// The facility (Organization id) the client writes and reads as.
    public var facility: String?
    public var role: Role
    /// The most the client may be granted (space-separated SMART scopes).
    public var scopes: String
    /// SHA-256 (hex) of the client secret, for `client_secret_basic` / `client_secret_post`.
    /// The secret is 256 random bits the server made, so a fast hash suffices (no password here).
    public var secretHash: String?
    /// The client's public keys as a JWK Set, for `private_key_jwt`.
    public var jwks: String?
    public var created: Int64
    public var disabled: Bool
    /// The HL7 v2 senders it is (`MSH-3^MSH-4` namespaces, or `^MSH-4` for any application of that
    /// facility): their messages over MLLP are written as this client.
    public var hl7Senders: [String]?
    /// Where its rest-hook subscriptions may deliver: URL prefixes (`https://his.example/fhir-hooks/`).
    /// A subscription to any other endpoint is refused (SSRF, ADR 023).
    public var subscriptionEndpoints: [String]?

    public static let kind = "oauth-client"
}

/// OAuth2 error (RFC 6749 §5.2) from the token endpoint.
public struct OAuthError: Error, Sendable, Equatable {
    public let status: Int
    public let error: String
    public let description: String

    public init(_ status: Int, _ error: String, _ description: String) {
        self.status = status
        self.error = error
        self.description = description
    }

    static func invalidClient(_ why: String) -> OAuthError { OAuthError(401, "invalid_client", why) }
}

/// The registered clients (platform records) and the client-credentials grant.
public struct ClientRegistry: Sendable {
    public let store: any ResourceStore
    public let tokens: TokenAuthority
    /// Longest accepted lifetime of a client assertion (SMART: at most five minutes).
    static let maxAssertionLifetime: TimeInterval = 300
    static let assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    public init(store: any ResourceStore, tokens: TokenAuthority) {
        self.store = store
        self.tokens = tokens
    }

    /// Registers a client and returns it with its secret (shown once; only its hash is kept).
    /// With `jwks` the client authenticates with `private_key_jwt` and gets no secret.
    public static func register(name: String, facility: String?, role: Role = .facilitySystem, scopes: String,
                                jwks: String?, hl7Senders: [String] = [], subscriptionEndpoints: [String] = [],
                                in store: any ResourceStore) async throws -> (ClientRegistration, secret: String?) {
        let parsed = scopes.split(separator: " ").map { ($0, SMARTScope($0)) }
        if let bad = parsed.first(where: { $0.1 == nil }) {
            throw OAuthError(400, "invalid_scope", "'\(bad.0)' is not a SMART resource scope (e.g. system/Observation.cruds)")
        }
        if let jwks {
            do { _ = try await JWTKeyCollection().add(jwksJSON: jwks) } catch {
                throw OAuthError(400, "invalid_client_metadata", "The public keys are not a valid JWK Set: \(error)")
            }
        }
        let secret = jwks == nil ? randomToken() : nil
        if role.actsForAFacility && (facility ?? "").isEmpty {
            throw OAuthError(400, "invalid_client_metadata", "A \(role.rawValue) client acts for a facility: name it (--facility)")
        }
        if !hl7Senders.isEmpty && facility == nil {
            throw OAuthError(400, "invalid_client_metadata", "An HL7 v2 sender writes as a facility: give the client one")
        }
        let client = ClientRegistration(
            id: randomToken(bytes: 12), name: name, facility: facility, role: role,
            scopes: SMARTScope.format(parsed.compactMap(\.1)), secretHash: secret.map(sha256Hex), jwks: jwks,
            created: Int64(Date().timeIntervalSince1970 * 1_000_000), disabled: false, hl7Senders: hl7Senders.isEmpty ? nil : hl7Senders,
            subscriptionEndpoints: subscriptionEndpoints.isEmpty ? nil : subscriptionEndpoints)
        if let bad = subscriptionEndpoints.first(where: { !($0.hasPrefix("https://") || $0.hasPrefix("http://")) }) {
            throw OAuthError(400, "invalid_client_metadata", "A subscription endpoint is an http(s) URL prefix, not '\(bad)'")
        }
        let content = String(decoding: try JSONEncoder().encode(client), as: UTF8.self)
        try await store.commitRecords([RecordWrite(PlatformRecord(kind: ClientRegistration.kind, id: client.id, content: content))])
        return (client, secret)
    }

    public func client(_ id: String) async throws -> ClientRegistration? {
        guard let record = try await store.record(kind: ClientRegistration.kind, id: id, now: Self.now()) else { return nil }
        return try JSONDecoder().decode(ClientRegistration.self, from: Data(record.content.utf8))
    }

    /// The token endpoint's form parameters, and the HTTP Basic credentials if sent.
    public struct TokenRequest: Sendable {
        public var form: [String: String]
        public var basic: (id: String, secret: String)?
        /// This endpoint's own URL, which a client assertion's `aud` must name.
        public var endpointURL: String

        public init(form: [String: String], basic: (id: String, secret: String)?, endpointURL: String) {
            self.form = form
            self.basic = basic
            self.endpointURL = endpointURL
        }
    }

    /// `grant_type=client_credentials`: authenticates the client (secret or signed assertion)
    /// and returns the token response's JSON members.
    public func grant(_ request: TokenRequest) async throws -> [String: any Sendable] {
        guard let grantType = request.form["grant_type"] else {
            throw OAuthError(400, "invalid_request", "grant_type is required")
        }
        guard grantType == "client_credentials" else {
            throw OAuthError(400, "unsupported_grant_type", "Only client_credentials is supported here (got '\(grantType)')")
        }
        let client = try await authenticate(request)
        let allowed = SMARTScope.parseList(client.scopes)
        let requested = request.form["scope"].map { $0.split(separator: " ").map(String.init) } ?? []
        let granted: [SMARTScope]
        if requested.isEmpty {
            granted = allowed
        } else {
            granted = requested.compactMap { SMARTScope($0) }.filter { want in allowed.contains { $0.covers(want) } }
        }
        guard !granted.isEmpty else {
            throw OAuthError(400, "invalid_scope", "None of the requested scopes is granted to this client (allowed: \(client.scopes))")
        }
        let principal = Principal(kind: .client, subject: client.id, role: client.role, facility: client.facility, scopes: granted)
        let (token, expiresIn) = try await tokens.issue(for: principal)
        return ["access_token": token, "token_type": "bearer", "expires_in": expiresIn, "scope": SMARTScope.format(granted)]
    }

    func authenticate(_ request: TokenRequest) async throws -> ClientRegistration {
        if let assertion = request.form["client_assertion"] {
            guard request.form["client_assertion_type"] == Self.assertionType else {
                throw OAuthError(400, "invalid_request", "client_assertion_type must be \(Self.assertionType)")
            }
            return try await verifyAssertion(assertion, endpointURL: request.endpointURL)
        }
        let credentials = request.basic ?? request.form["client_id"].flatMap { id in request.form["client_secret"].map { (id, $0) } }
        guard let (id, secret) = credentials else {
            throw OAuthError.invalidClient("No client authentication: send a client_assertion (private_key_jwt) or a client secret")
        }
        guard let client = try await client(id), !client.disabled, let hash = client.secretHash else {
            throw OAuthError.invalidClient("Unknown client or wrong secret")
        }
        // Compare digests, in constant time.
        guard Self.constantTimeEqual(Self.sha256Hex(secret), hash) else { throw OAuthError.invalidClient("Unknown client or wrong secret") }
        return client
    }

    /// SMART Backend Services' client assertion: signed by a key the client registered,
    /// `iss` = `sub` = client id, `aud` = this endpoint, a short `exp`, and a `jti` never seen before.
    func verifyAssertion(_ assertion: String, endpointURL: String) async throws -> ClientRegistration {
        let parts = assertion.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]), let payloadData = Base64URL.decode(parts[1]),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              let claims = try? JSONDecoder().decode(AssertionClaims.self, from: payloadData) else {
            throw OAuthError.invalidClient("The client assertion is not a JWT")
        }
        guard let alg = header["alg"] as? String, ["ES256", "ES384", "RS256", "RS384"].contains(alg) else {
            throw OAuthError.invalidClient("The client assertion's algorithm '\(header["alg"] ?? "none")' is not accepted (ES256, ES384, RS256, RS384)")
        }
        guard claims.iss == claims.sub, let client = try await client(claims.sub), !client.disabled, let jwks = client.jwks else {
            throw OAuthError.invalidClient("The assertion's iss and sub must name a client registered with public keys")
        }
        let keys = JWTKeyCollection()
        do {
            _ = try await keys.add(jwksJSON: jwks)
            _ = try await keys.verify(assertion, as: AssertionClaims.self, iteratingKeys: true)
        } catch {
            throw OAuthError.invalidClient("The client assertion's signature does not verify with the client's registered keys")
        }
        guard claims.aud.contains(endpointURL) else {
            throw OAuthError.invalidClient("The client assertion's aud must be this token endpoint (\(endpointURL))")
        }
        let now = Date()
        guard claims.exp.timeIntervalSince(now) > 0 else { throw OAuthError.invalidClient("The client assertion has expired") }
        guard claims.exp.timeIntervalSince(now) <= Self.maxAssertionLifetime + 60 else {
            throw OAuthError.invalidClient("The client assertion must expire within five minutes")
        }
        guard let jti = claims.jti, !jti.isEmpty else { throw OAuthError.invalidClient("The client assertion needs a jti") }
        // One use per jti, until the assertion expires (shared by every node through the store).
        do {
            try await store.commitRecords([RecordWrite(PlatformRecord(kind: "assertion-jti", id: client.id + " " + jti, content: "{}",
                                                                      expires: Int64(claims.exp.timeIntervalSince1970 * 1_000_000)),
                                                       mode: .insertNew(now: Self.now()))])
        } catch StoreError.recordExists {
            throw OAuthError.invalidClient("The client assertion's jti was used before (replay)")
        }
        return client
    }

    struct AssertionClaims: JWTPayload {
        var iss: String
        var sub: String
        var aud: [String]
        var exp: Date
        var jti: String?

        enum CodingKeys: String, CodingKey { case iss, sub, aud, exp, jti }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            iss = try c.decode(String.self, forKey: .iss)
            sub = try c.decode(String.self, forKey: .sub)
            if let one = try? c.decode(String.self, forKey: .aud) { aud = [one] } else { aud = try c.decode([String].self, forKey: .aud) }
            exp = Date(timeIntervalSince1970: try c.decode(Double.self, forKey: .exp))
            jti = try c.decodeIfPresent(String.self, forKey: .jti)
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(iss, forKey: .iss)
            try c.encode(sub, forKey: .sub)
            try c.encode(aud, forKey: .aud)
            try c.encode(exp.timeIntervalSince1970, forKey: .exp)
            try c.encodeIfPresent(jti, forKey: .jti)
        }

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

    public static func randomToken(bytes: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let raw = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Base64.urlEncode(raw)
    }

    public static func sha256Hex(_ text: String) -> String {
        AuditChain.hex(SHA256.hash(data: Data(text.utf8)))
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension SMARTScope {
    /// Whether this scope grants at least what `other` asks (same context, type or `*`, permissions).
    public func covers(_ other: SMARTScope) -> Bool {
        context == other.context && (resourceType == "*" || resourceType == other.resourceType)
            && permissions.isSuperset(of: other.permissions)
    }
}
