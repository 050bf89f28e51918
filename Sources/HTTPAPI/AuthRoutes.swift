import Access
import FHIRModel
import Foundation
import HTTPTypes
import Hummingbird
import Platform
import Store

/// Who a request acts for: the principal of its bearer token, or — in `--dev` mode only, for a
/// request without an `Authorization` header — the development administrator.
struct Authenticator: Sendable {
    let tokens: TokenAuthority?
    let development: Bool

    func principal(_ request: Request) async throws(AuthenticationFailure) -> Principal {
        // By value list, not `headers[.authorization]`, which joins (copies) even a single value.
        let values = request.headers[values: .authorization]
        guard let header = values.first else {
            if development { return .development }
            throw AuthenticationFailure(nil, "This endpoint needs a bearer token (OAuth2 client credentials at /auth/token)")
        }
        guard values.count == 1 else {
            throw AuthenticationFailure("invalid_request", "A request carries one Authorization header")
        }
        guard let token = Self.bearerToken(header) else {
            throw AuthenticationFailure("invalid_request", "The Authorization header must be 'Bearer <access token>'")
        }
        guard let tokens else { throw AuthenticationFailure("invalid_token", "This server issues no tokens") }
        return try await tokens.verify(token)
    }

    /// The token of `Bearer <token>` (scheme in any case, RFC 7235 §2.1), without ASCII spaces
    /// and tabs at either end; nil for another scheme or no token. On bytes: Foundation's
    /// `trimmingCharacters` bridges through UTF-16 and cost a tenth of a read's CPU.
    static func bearerToken(_ header: String) -> String? {
        var header = header
        return header.withUTF8 { bytes -> String? in
            let scheme: StaticString = "bearer"
            let n = scheme.utf8CodeUnitCount
            guard bytes.count > n, bytes[n] == 0x20 else { return nil }
            for i in 0..<n where bytes[i] | 0x20 != scheme.utf8Start[i] { return nil }
            var start = n, end = bytes.count
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            return start == end ? nil : String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }
    }

    /// A 401 with the RFC 6750 challenge and an OperationOutcome saying why.
    static func refusal(_ failure: AuthenticationFailure) -> Response {
        FHIRResponse.json(OperationOutcome.make([Issue(code: "login", failure.reason)]), status: .unauthorized,
                          headers: [.wwwAuthenticate: failure.challenge])
    }
}

/// OAuth2 and SMART discovery: `POST /auth/token` (client credentials with a client secret or
/// `private_key_jwt`), `/.well-known/smart-configuration` (also under `/fhir`) and the token
/// signing keys at `/.well-known/jwks.json`.
struct AuthRoutes: Sendable {
    let clients: ClientRegistry?
    let users: UserDirectory?
    /// Where logins are audited.
    let store: any ResourceStore
    /// The externally visible base URL (`https://hie.example.gov.cn`); nil: from the Host header.
    let publicURL: String?
    /// `https` with TLS on.
    let scheme: String
    /// Requests to `/auth/*` per client address (nil: unlimited).
    let limiter: RateLimiter?
    /// Where refused token requests are audited.
    var failures: AuthenticationFailureAudit? = nil

    func register(on router: Router<HuitongRequestContext>) {
        let auth = router.group("auth")
        if let limiter { auth.add(middleware: AddressRateLimitMiddleware(limiter: limiter)) }
        auth.post("token") { request, context in await token(request, context) }
        auth.post("login") { request, context in await login(request, context) }
        auth.post("logout") { request, _ in await logout(request) }
        router.get(".well-known/smart-configuration") { request, _ in smartConfiguration(request) }
        router.get("fhir/.well-known/smart-configuration") { request, _ in smartConfiguration(request) }
        router.get(".well-known/jwks.json") { _, _ -> Response in
            let jwks = clients?.tokens.publicJWKS ?? "{\"keys\":[]}"
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: jwks)))
        }
    }

    func base(_ request: Request) -> String {
        publicURL ?? "\(scheme)://\(request.head.authority ?? "localhost")"
    }

    func smartConfiguration(_ request: Request) -> Response {
        let base = base(request)
        let body: [String: Any] = [
            "issuer": clients?.tokens.issuer ?? "huitong",
            "jwks_uri": base + "/.well-known/jwks.json",
            "token_endpoint": base + "/auth/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "RS256", "RS384"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs", "patient/*.rs"],
            "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric", "permission-v2", "permission-v1"],
        ]
        return Self.json(body, status: .ok)
    }

    func token(_ request: Request, _ context: HuitongRequestContext) async -> Response {
        await respond {
            guard let clients, let users else { throw OAuthError(400, "unsupported_grant_type", "This server issues no tokens") }
            let form = try await Self.form(request)
            do {
                if form["grant_type"] == "refresh_token" {
                    return try await users.refresh(form["refresh_token"] ?? "")
                }
                return try await clients.grant(ClientRegistry.TokenRequest(
                    form: form, basic: Self.basicCredentials(request), endpointURL: base(request) + "/auth/token"))
            } catch let error as OAuthError {
                // Who tried: the client id it named (in the form, Basic credentials or the assertion's issuer), if any.
                let subject = form["client_id"] ?? Self.basicCredentials(request)?.id ?? Self.assertionIssuer(form["client_assertion"]) ?? "unknown"
                await failures?.record("token", subject: subject, kind: .client, address: context.remoteAddress?.ipAddress,
                                       reason: "\(error.error): \(error.description)")
                throw error
            }
        }
    }

    /// The `iss` of an unverified client assertion, only to name who tried in the audit trail.
    static func assertionIssuer(_ assertion: String?) -> String? {
        guard let assertion else { return nil }
        let parts = assertion.split(separator: ".")
        guard parts.count >= 2 else { return nil }
        var b64 = String(parts[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let iss = claims["iss"] as? String else { return nil }
        return String(iss.prefix(128))
    }

    /// People log in with username, password and the current TOTP code (both factors, always).
    func login(_ request: Request, _ context: HuitongRequestContext) async -> Response {
        await respond {
            guard let users else { throw OAuthError(400, "unsupported_grant_type", "This server issues no tokens") }
            let form = try await Self.form(request)
            let username = form["username"] ?? ""
            let origin = RequestOrigin(address: context.remoteAddress?.ipAddress)
            do {
                let response = try await users.login(username: username, password: form["password"] ?? "", totp: form["totp"] ?? "")
                if let account = try await users.account(username) {
                    let who = Principal(kind: .user, subject: username, role: account.role, facility: account.facility, scopes: [])
                    try await AuditTrail(store: store, principal: who, origin: origin).append(.operation("login"), type: nil, entities: [], patients: [])
                }
                return response
            } catch let error as OAuthError {
                let who = Principal(kind: .user, subject: username, role: .resident, scopes: [])
                try? await AuditTrail(store: store, principal: who, origin: origin)
                    .append(.operation("login"), type: nil, entities: [], patients: [], outcome: .denied(error.description))
                throw error
            }
        }
    }

    func logout(_ request: Request) async -> Response {
        await respond {
            guard let users else { throw OAuthError(400, "unsupported_grant_type", "This server issues no tokens") }
            try await users.logout(try await Self.form(request)["refresh_token"] ?? "")
            return [:]
        }
    }

    static func form(_ request: Request) async throws -> [String: String] {
        guard request.headers[.contentType]?.hasPrefix("application/x-www-form-urlencoded") ?? false else {
            throw OAuthError(400, "invalid_request", "The request must be application/x-www-form-urlencoded")
        }
        var r = request
        return parseForm(String(buffer: try await r.collectBody(upTo: 64 * 1024)))
    }

    /// Runs an OAuth endpoint: its JSON, or an RFC 6749 error.
    func respond(_ body: () async throws -> [String: any Sendable]) async -> Response {
        do {
            var headers: HTTPFields = [.cacheControl: "no-store", .pragma: "no-cache"]
            headers[.contentType] = "application/json"
            return Self.json(try await body(), status: .ok, headers: headers)
        } catch let error as OAuthError {
            var headers: HTTPFields = [.cacheControl: "no-store"]
            if error.status == 401 { headers[.wwwAuthenticate] = "Basic realm=\"huitong\"" }
            return Self.json(["error": error.error, "error_description": error.description],
                             status: HTTPResponse.Status(code: error.status), headers: headers)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            return Self.json(["error": "invalid_request", "error_description": "The token request is too large"], status: .contentTooLarge)
        } catch {
            return Self.json(["error": "server_error", "error_description": "Internal error; incident \(Incident.report(error)) is in the server's log"],
                             status: .internalServerError)
        }
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func parseForm(_ text: String) -> [String: String] {
        var form: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            form[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return form
    }

    /// `Authorization: Basic base64(client_id:client_secret)` (RFC 6749 §2.3.1: both form-encoded).
    static func basicCredentials(_ request: Request) -> (id: String, secret: String)? {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("basic "),
              let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
              let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
        func decode(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
        return (decode(text[..<colon]), decode(text[text.index(after: colon)...]))
    }
}

extension HTTPField.Name {
    static let pragma = HTTPField.Name("Pragma")!
}
