import Access
import FHIRModel
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Identity
import Logging
import NIOCore
import Platform
import Prometheus
import ServiceLifecycle
import Store

/// Builds the Hummingbird application: FHIR REST under `/fhir`, a status page at `/`,
/// and `/health` / `/ready` for load balancers.
public enum HuitongApplication {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var maxBodyBytes: Int
        /// The master patient index's rules; nil turns matching off.
        public var matching: MatchRules?
        /// Signs and verifies access tokens; nil: no tokens are issued (only `development` works).
        public var tokens: TokenAuthority?
        /// `huitong serve --dev`: a request without a token acts as a development administrator.
        public var development: Bool
        /// The externally visible base URL, for token audiences and discovery (nil: the Host header).
        public var publicURL: String?
        /// Off only for a benchmark's baseline (`serve --dev --no-audit`).
        public var audit = true
        /// Sensitive categories (labelled on write, hidden from other facilities without an opt-in).
        public var sensitive = SensitiveCategories.defaults
        /// HTTPS: PEM certificate chain and private key files (nil: plain HTTP).
        public var tls: (certificate: String, key: String)?
        public var rateLimits = RateLimits()
        /// Encrypts resident ID and phone numbers at rest (nil: stored in clear).
        public var identifiers: IdentifierProtection?
        /// Exported at `/metrics` (Prometheus text format).
        public var metrics = PrometheusCollectorRegistry()
        /// The HL7 v2 gateway's per-sender counts, at `/hl7/status` (nil: no MLLP listener).
        public var hl7: HL7Counters?
        /// E-health card keys (nil: no `/card` routes).
        public var cards: CardKeyring?
        public var cardSettings = CardSettings()
        /// How long a request's head may take to arrive, and an idle connection may stay open.
        public var headerTimeout: TimeAmount = .seconds(10)
        public var idleTimeout: TimeAmount = .seconds(60)
        /// The FHIR operations offered: the platform's, then any a domain module registers (ADR 019).
        public var operations = OperationRegistry.platform

        public init(host: String = "127.0.0.1", port: Int = 8080, maxBodyBytes: Int = 20 * 1024 * 1024,
                    matching: MatchRules? = .defaults, tokens: TokenAuthority? = nil, development: Bool = false,
                    publicURL: String? = nil) {
            self.host = host
            self.port = port
            self.maxBodyBytes = maxBodyBytes
            self.matching = matching
            self.tokens = tokens
            self.development = development
            self.publicURL = publicURL
        }
    }

    /// The one FHIR service of a server: HTTP and the HL7 v2 gateway share it (and so its
    /// master-index lock and pipeline).
    public static func service(store: any ResourceStore, configuration: Configuration) -> FHIRService {
        let pipeline = IngestPipeline(maxBodyBytes: configuration.maxBodyBytes, sensitive: configuration.sensitive,
                                      protection: configuration.identifiers)
        return FHIRService(store: store, pipeline: pipeline, matching: configuration.matching, auditing: configuration.audit)
    }

    public static func router(store: any ResourceStore, configuration: Configuration, service: FHIRService? = nil) -> Router<HuitongRequestContext> {
        let router = Router(context: HuitongRequestContext.self)
        router.add(middleware: SecurityHeadersMiddleware(tls: configuration.tls != nil))
        let scheme = configuration.tls == nil ? "http" : "https"
        let service = service ?? Self.service(store: store, configuration: configuration)
        var searches = SearchService(store: store)
        searches.auditing = configuration.audit
        searches.masterIndex = service.masterIndex
        searches.protection = configuration.identifiers
        let failures = AuthenticationFailureAudit(store: store)
        var routes = FHIRRoutes(service: service, searches: searches, bundles: BundleProcessor(service: service),
                              maxBodyBytes: configuration.maxBodyBytes,
                              authenticator: Authenticator(tokens: configuration.tokens, development: configuration.development),
                              development: configuration.development, scheme: scheme,
                              clientLimiter: configuration.rateLimits.perClient.map { RateLimiter(rate: $0, burst: 2 * $0) },
                              publicURL: configuration.publicURL)
        routes.failures = failures
        routes.operations = configuration.operations
        let fhir = routes
        fhir.register(on: router)
        if let cards = configuration.cards {
            CardRoutes(routes: fhir, keys: cards, settings: configuration.cardSettings).register(on: router)
        }
        AuthRoutes(clients: configuration.tokens.map { ClientRegistry(store: store, tokens: $0) },
                   users: configuration.tokens.map { UserDirectory(store: store, tokens: $0) }, store: store,
                   publicURL: configuration.publicURL, scheme: scheme,
                   limiter: configuration.rateLimits.authPerAddress.map { RateLimiter(rate: $0, burst: max(20, 10 * $0)) },
                   failures: failures)
            .register(on: router)
        router.get("health") { _, _ in "ok" }
        router.get("ready") { _, _ -> Response in
            do {
                _ = try await store.resourceCounts()
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready")))
            } catch {
                return Response(status: .serviceUnavailable,
                                body: .init(byteBuffer: ByteBuffer(string: "store unavailable (incident \(Incident.report(error)))")))
            }
        }
        // Operational data, no patient data: served like the status page (restrict at the network
        // or proxy where the platform is exposed).
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: configuration.metrics.emitToBuffer())))
        }
        router.get("hl7/status") { _, _ -> Response in
            var senders = JSONObject()
            for (name, sender) in (configuration.hl7?.snapshot ?? [:]).sorted(by: { $0.key < $1.key }) {
                var counts = JSONObject()
                for (k, v) in sender.counts.sorted(by: { $0.key < $1.key }) { counts[k] = .number(String(v)) }
                senders[name] = .object(JSONObject([("counts", .object(counts)),
                                                     ("last", sender.last.map { .string(FHIRDateTime.formatInstant(micros: Int64($0.timeIntervalSince1970 * 1_000_000))) } ?? .null)]))
            }
            return FHIRResponse.json(.object(JSONObject([("mllp", .bool(configuration.hl7 != nil)), ("senders", .object(senders))])))
        }
        // The gateway's rejected messages, for administrators and operators (audited).
        router.get("hl7/rejected") { request, context in
            try await fhir.handle(request, context) { r, _ in
                let params = request.uri.queryParameters
                let count = try params["_count"].map { text throws(FHIRError) -> Int in
                    guard let n = Int(text), (1...1000).contains(n) else {
                        throw FHIRError(.invalid, code: "invalid", "_count must be a number from 1 to 1000", at: "_count")
                    }
                    return n
                } ?? 100
                return FHIRResponse.json(try await RejectedMessages(service: r.service).list(sender: params["sender"].map(String.init), count: count))
            }
        }
        router.get("hl7/rejected/{id}") { request, context in
            try await fhir.handle(request, context) { r, _ in
                FHIRResponse.json(try await RejectedMessages(service: r.service).read(try context.parameters.require("id")))
            }
        }
        router.get("/") { _, _ -> Response in
            StatusPage.render(development: configuration.development)
        }
        return router
    }

    /// The server side of TLS (1.2 or later) from PEM files: HTTPS, and MLLP with `--mllp-tls`.
    public static func serverTLS(certificate: String, key: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        var settings = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
        settings.minimumTLSVersion = .tlsv12
        return settings
    }

    /// - Parameter services: background work run beside the HTTP server in one service group (the
    ///   MLLP listener, the sweeps), shut down gracefully with it on SIGTERM or SIGINT, after it.
    public static func make(store: any ResourceStore, configuration: Configuration, logger: Logger,
                            service: FHIRService? = nil, services: [any Service] = []) throws -> some ApplicationProtocol {
        let headerTimeout = configuration.headerTimeout
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [RequestHeadTimeoutHandler(timeout: headerTimeout, logger: logger)],
                                               idleTimeout: configuration.idleTimeout)
        var server = HTTPServerBuilder.http1(configuration: http1)
        if let tls = configuration.tls {
            server = try .tls(.http1(configuration: http1), tlsConfiguration: serverTLS(certificate: tls.certificate, key: tls.key))
        }
        return Application(
            router: router(store: store, configuration: configuration, service: service),
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Huitong"),
            services: services,
            logger: logger)
    }
}
