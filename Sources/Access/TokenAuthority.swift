import Crypto
import Foundation
import JWTKit
import Synchronization

/// The claims of an access token this server issues.
struct AccessTokenClaims: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var jti: IDClaim
    var scope: String
    var role: String
    /// `client` or `user`.
    var kind: String
    var facility: String?
    var patient: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// A key that signs access tokens (ES256), named by its `kid`.
public struct SigningKey: Sendable {
    public let kid: String
    let key: ES256PrivateKey

    public init(kid: String, pem: String) throws {
        self.kid = kid
        self.key = try ES256PrivateKey(pem: pem)
    }

    /// A new key; its `kid` sorts after older ones (time first), so the newest signs.
    public static func generate(now: Date = Date()) throws -> (kid: String, pem: String) {
        let stamp = String(Int(now.timeIntervalSince1970), radix: 36)
        let random = (0..<6).map { _ in String(Int.random(in: 0..<36), radix: 36) }.joined()
        return ("\(stamp)-\(random)", P256.Signing.PrivateKey().pemRepresentation)
    }
}

/// Why a request could not be authenticated (HTTP 401 with `WWW-Authenticate`).
public struct AuthenticationFailure: Error, Sendable, Equatable {
    /// RFC 6750 error code: `invalid_token`, `invalid_request`; nil when no token was sent.
    public let error: String?
    public let reason: String

    public init(_ error: String?, _ reason: String) {
        self.error = error
        self.reason = reason
    }

    /// The `WWW-Authenticate` header value (RFC 6750 §3).
    public var challenge: String {
        var value = "Bearer realm=\"huitong\""
        if let error { value += ", error=\"\(error)\", error_description=\"\(reason.replacingOccurrences(of: "\"", with: "'"))\"" }
        return value
    }
}

/// Issues and verifies access tokens: ES256 JWTs with `kid`, SMART scopes, role, facility and
/// subject. The newest key signs; every configured key verifies, so a rotated key's tokens
/// stay valid until they expire.
public final class TokenAuthority: Sendable {
    let keys: JWTKeyCollection
    let signingKid: String
    public let issuer: String
    public let audience: String
    /// Seconds an access token is valid.
    public let lifetime: Int
    /// The public keys as a JWK Set (for `/.well-known/jwks.json`).
    public let publicJWKS: String
    /// Tokens already verified, until they expire: a client sends the same token with every
    /// request for its lifetime, and an ES256 verification costs more than a read by id.
    private let verified = Mutex<[String: (principal: Principal, expires: Date)]>([:])
    static let cacheLimit = 50_000

    public init(keys: [SigningKey], issuer: String = "huitong", audience: String = "huitong-fhir", lifetime: Int = 300) async throws {
        guard let newest = keys.max(by: { $0.kid < $1.kid }) else { throw AuthenticationFailure(nil, "No token signing key") }
        let collection = JWTKeyCollection()
        var jwks: [[String: String]] = []
        for k in keys {
            await collection.add(ecdsa: k.key, kid: JWKIdentifier(string: k.kid))
            guard let p = k.key.publicKey.parameters else { continue }
            jwks.append(["kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": k.kid, "x": p.x, "y": p.y])
        }
        self.keys = collection
        self.signingKid = newest.kid
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        let data = try JSONSerialization.data(withJSONObject: ["keys": jwks], options: [.sortedKeys])
        self.publicJWKS = String(decoding: data, as: UTF8.self)
    }

    /// A signed token for `principal`, and its lifetime in seconds.
    public func issue(for principal: Principal, now: Date = Date()) async throws -> (token: String, expiresIn: Int) {
        let jti = principal.tokenID ?? UUID().uuidString.lowercased()
        let claims = AccessTokenClaims(
            iss: IssuerClaim(value: issuer), sub: SubjectClaim(value: principal.subject), aud: AudienceClaim(value: [audience]),
            exp: ExpirationClaim(value: now.addingTimeInterval(TimeInterval(lifetime))), iat: IssuedAtClaim(value: now),
            jti: IDClaim(value: jti), scope: SMARTScope.format(principal.scopes), role: principal.role.rawValue,
            kind: principal.kind.rawValue, facility: principal.facility, patient: principal.patient)
        return (try await keys.sign(claims, kid: JWKIdentifier(string: signingKid)), lifetime)
    }

    /// The principal a bearer token names, or why it names none (expired, wrong signature,
    /// another issuer or audience, an algorithm other than ES256, malformed).
    public func verify(_ token: String, now: Date = Date()) async throws(AuthenticationFailure) -> Principal {
        if let hit = verified.withLock({ $0[token] }) {
            if hit.expires > now { return hit.principal }
            throw AuthenticationFailure("invalid_token", "The token has expired")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw AuthenticationFailure("invalid_token", "The token is not a JWT")
        }
        guard header["alg"] as? String == "ES256" else {
            throw AuthenticationFailure("invalid_token", "The token's algorithm '\(header["alg"] ?? "none")' is not accepted (ES256)")
        }
        let claims: AccessTokenClaims
        do {
            claims = try await keys.verify(token, as: AccessTokenClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw AuthenticationFailure("invalid_token", "The token has expired")
        } catch {
            throw AuthenticationFailure("invalid_token", "The token's signature or claims are not valid")
        }
        guard claims.iss.value == issuer else { throw AuthenticationFailure("invalid_token", "The token was issued by another server") }
        guard claims.aud.value.contains(audience) else { throw AuthenticationFailure("invalid_token", "The token is for another audience") }
        guard let role = Role(rawValue: claims.role), let kind = Principal.Kind(rawValue: claims.kind), kind == .client || kind == .user else {
            throw AuthenticationFailure("invalid_token", "The token names an unknown role or kind")
        }
        let principal = Principal(kind: kind, subject: claims.sub.value, role: role, facility: claims.facility,
                                  scopes: SMARTScope.parseList(claims.scope), patient: claims.patient, tokenID: claims.jti.value)
        verified.withLock { cache in
            if cache.count >= Self.cacheLimit { cache = cache.filter { $0.value.expires > now } }
            if cache.count < Self.cacheLimit { cache[token] = (principal, claims.exp.value) }
        }
        return principal
    }
}

/// base64url without padding (RFC 7515 §2).
enum Base64URL {
    static func decode(_ text: some StringProtocol) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }
}
