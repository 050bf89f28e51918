import Access
import FHIRModel
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Platform
import Store

/// Headers on every response: no MIME sniffing, no framing, no referrer leaking record URLs;
/// HTML also gets a content security policy (nothing but its own origin), and with TLS on,
/// HSTS tells browsers to use HTTPS only.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let tls: Bool

    static var hstsValue: String { "max-age=31536000; includeSubDomains" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        if response.headers[.contentType]?.lowercased().hasPrefix("text/html") == true, response.headers[.contentSecurityPolicy] == nil {
            response.headers[.contentSecurityPolicy] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
        }
        if tls { response.headers[.strictTransportSecurity] = Self.hstsValue }
        return response
    }
}

/// Token buckets by key (a client's address, a principal): `rate` requests a second on average,
/// up to `burst` at once. Keys idle long enough to have refilled are forgotten.
final class RateLimiter: @unchecked Sendable {
    struct Bucket {
        var tokens: Double
        var updated: Double
    }

    let rate: Double
    let burst: Double
    private var buckets: [String: Bucket] = [:]
    private let lock = NSLock()

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes one request's token; nil when allowed, else the seconds until one is available.
    func take(_ key: String, now: Double = Date().timeIntervalSinceReferenceDate) -> Double? {
        lock.withLock {
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if buckets.count > 100_000 { forgetFull(now) }
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return (1 - bucket.tokens) / rate
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            return nil
        }
    }

    private func forgetFull(_ now: Double) {
        buckets = buckets.filter { $0.value.tokens + (now - $0.value.updated) * rate < burst }
    }

    /// 429 with `Retry-After` and an OperationOutcome.
    static func refusal(retryAfter seconds: Double, what: String) -> Response {
        var response = FHIRResponse.error(FHIRError(.tooManyRequests, code: "throttled", "Too many requests \(what); retry after \(Int(seconds.rounded(.up))) s"))
        response.headers[.retryAfter] = String(Int(seconds.rounded(.up)))
        return response
    }
}

/// Limits requests to the authentication endpoints per client address (password and secret
/// guessing; the per-account lockout stops one account being guessed, this stops many).
struct AddressRateLimitMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let limiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let address = context.remoteAddress?.ipAddress ?? "unknown"
        if let wait = limiter.take(address) {
            return RateLimiter.refusal(retryAfter: wait, what: "to \(request.uri.path) from \(address)")
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static var xFrameOptions: Self { Self("X-Frame-Options")! }
    static var referrerPolicy: Self { Self("Referrer-Policy")! }
}

/// The limits a deployment sets (`huitong serve --auth-rate-limit`, `--client-rate-limit`).
public struct RateLimits: Sendable {
    /// Requests a second to `/auth/*` per client address (burst: 10 × that, at least 20).
    public var authPerAddress: Double?
    /// Requests a second to `/fhir` per authenticated client or user (burst: 2 × that).
    public var perClient: Double?

    public init(authPerAddress: Double? = 5, perClient: Double? = nil) {
        self.authPerAddress = authPerAddress
        self.perClient = perClient
    }
}

/// Failed authentication — a refused token request, a forged, expired or malformed bearer token —
/// is audited like every refusal (全程留痕), but a flood of failures from one address must not
/// flood the audit chain: each address gets a budget of events (10 at once, then one a second);
/// failures beyond it are counted and the count is written into that address's next event.
final class AuthenticationFailureAudit: @unchecked Sendable {
    let store: any ResourceStore
    let limiter = RateLimiter(rate: 1, burst: 10)
    private var suppressed: [String: Int] = [:]
    private let lock = NSLock()

    init(store: any ResourceStore) {
        self.store = store
    }

    /// Records a failed attempt by `subject` (a client id, a user name, or `unknown`) from `address`.
    func record(_ operation: String, subject: String, kind: Principal.Kind, address: String?, reason: String) async {
        let key = address ?? "-"
        guard limiter.take(key) == nil else {
            lock.withLock { suppressed[key, default: 0] += 1 }
            return
        }
        let skipped = lock.withLock { suppressed.removeValue(forKey: key) ?? 0 }
        let why = skipped == 0 ? reason : reason + " (and \(skipped) earlier failures from this address, not recorded one by one)"
        let who = Principal(kind: kind, subject: subject, role: .resident, scopes: [])
        try? await AuditTrail(store: store, principal: who, origin: RequestOrigin(address: address))
            .append(.operation(operation), type: nil, entities: [], patients: [], outcome: .denied(why))
    }
}
