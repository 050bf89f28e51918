import Access
import FHIRModel
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import NIOSSL
import Logging
import NIOCore
import Platform
import Cards
import Gateway
import Prometheus
import ServiceLifecycle
import Store

/// The HTTP side of the platform: FHIR REST under `/fhir`, the card, auth and HL7 status routes, a
/// status page at `/`, and `/health` / `/ready` for load balancers. It maps requests onto the
/// services it is given; what they are and how they are configured is decided in `Server`
/// (`PlatformServer`), the one place of wiring (ADR 021).
public enum HuitongApplication {
    /// How the HTTP listener behaves (the `serve` flags that concern HTTP only).
    public struct Settings: Sendable {
        public var host: String
        public var port: Int
        public var maxBodyBytes: Int
        /// `huitong serve --dev`: a request without a token acts as a development administrator.
        public var development: Bool
        /// The externally visible base URL, for token audiences and discovery (nil: the Host header).
        public var publicURL: String?
        /// HTTPS: PEM certificate chain and private key files (nil: plain HTTP).
        public var tls: (certificate: String, key: String)?
        public var rateLimits = RateLimits()
        /// How long a request's head may take to arrive, and an idle connection may stay open.
        public var headerTimeout: TimeAmount = .seconds(10)
        public var idleTimeout: TimeAmount = .seconds(60)
        /// A Binary sent in its own type larger than this is kept as a sealed stream (ADR 029).
        public var documentStreamThreshold = 4 * 1024 * 1024
        /// The largest document a Binary sent in its own type may hold.
        public var maxDocumentBytes = Int(Int32.max)

        public init(host: String = "127.0.0.1", port: Int = 8080, maxBodyBytes: Int = 20 * 1024 * 1024,
                    development: Bool = false, publicURL: String? = nil) {
            self.host = host
            self.port = port
            self.maxBodyBytes = maxBodyBytes
            self.development = development
            self.publicURL = publicURL
        }
    }

    /// The services the routes call, built by the wiring.
    public struct Components: Sendable {
        public var service: FHIRService
        public var searches: SearchService
        /// The FHIR operations offered: the platform's, then any a domain module registers (ADR 019).
        public var operations: OperationRegistry
        /// Signs and verifies access tokens; nil: no tokens are issued (only `development` works).
        public var tokens: TokenAuthority?
        /// E-health card keys and settings (nil: no `/card` routes).
        public var cards: (keys: CardKeyring, settings: CardSettings)?
        /// The HL7 v2 gateway's per-sender counts, at `/hl7/status` (nil: no MLLP listener).
        public var hl7: HL7Counters?
        /// Exported at `/metrics` (Prometheus text format).
        public var metrics: PrometheusCollectorRegistry
        /// Serves a websocket opened at `socketPath` (its text messages in, a writer of text
        /// messages out) until it closes; nil: no websocket is accepted.
        public var socketPath: String?
        public var socketSession: (@Sendable (AsyncStream<String>, @escaping @Sendable (String) async throws -> Void) async -> Void)?

        public init(service: FHIRService, searches: SearchService, operations: OperationRegistry, tokens: TokenAuthority?,
                    cards: (keys: CardKeyring, settings: CardSettings)?, hl7: HL7Counters?, metrics: PrometheusCollectorRegistry) {
            self.service = service
            self.searches = searches
            self.operations = operations
            self.tokens = tokens
            self.cards = cards
            self.hl7 = hl7
            self.metrics = metrics
        }
    }

    public static func router(settings: Settings, components: Components) -> Router<HuitongRequestContext> {
        let router = Router(context: HuitongRequestContext.self)
        router.add(middleware: SecurityHeadersMiddleware(tls: settings.tls != nil))
        let scheme = settings.tls == nil ? "http" : "https"
        let service = components.service
        let store = service.store
        let failures = AuthenticationFailureAudit(store: store)
        var routes = FHIRRoutes(service: service, searches: components.searches, bundles: BundleProcessor(service: service),
                              maxBodyBytes: settings.maxBodyBytes,
                              authenticator: Authenticator(tokens: components.tokens, development: settings.development),
                              development: settings.development, scheme: scheme,
                              clientLimiter: settings.rateLimits.perClient.map { RateLimiter(rate: $0, burst: 2 * $0) },
                              publicURL: settings.publicURL)
        routes.failures = failures
        routes.operations = components.operations
        routes.documents = DocumentLimits(streamFrom: settings.documentStreamThreshold, maximum: settings.maxDocumentBytes)
        let fhir = routes
        fhir.register(on: router)
        if let cards = components.cards {
            CardRoutes(routes: fhir, keys: cards.keys, settings: cards.settings).register(on: router)
        }
        AuthRoutes(clients: components.tokens.map { ClientRegistry(store: store, tokens: $0) },
                   users: components.tokens.map { UserDirectory(store: store, tokens: $0) }, store: store,
                   publicURL: settings.publicURL, scheme: scheme,
                   limiter: settings.rateLimits.authPerAddress.map { RateLimiter(rate: $0, burst: max(20, 10 * $0)) },
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
        let metrics = components.metrics, hl7 = components.hl7, development = settings.development
        // Operational data, no patient data: served like the status page (restrict at the network
        // or proxy where the platform is exposed).
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
        }
        router.get("hl7/status") { _, _ -> Response in
            var senders = JSONObject()
            for (name, sender) in (hl7?.snapshot ?? [:]).sorted(by: { $0.key < $1.key }) {
                var counts = JSONObject()
                for (k, v) in sender.counts.sorted(by: { $0.key < $1.key }) { counts[k] = .number(String(v)) }
                senders[name] = .object(JSONObject([("counts", .object(counts)),
                                                     ("last", sender.last.map { .string(FHIRDateTime.formatInstant(micros: Int64($0.timeIntervalSince1970 * 1_000_000))) } ?? .null)]))
            }
            return FHIRResponse.json(.object(JSONObject([("mllp", .bool(hl7 != nil)), ("senders", .object(senders))])))
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
            StatusPage.render(development: development)
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

    /// HTTP/1.1 that upgrades a request for `path` to a websocket (anything else is HTTP as usual).
    static func webSockets(http1: HTTP1Channel.Configuration, path: String, headerTimeout: TimeAmount, idleTimeout: TimeAmount,
                           session: @escaping @Sendable (AsyncStream<String>, @escaping @Sendable (String) async throws -> Void) async -> Void,
                           logger: Logger) -> HTTPServerBuilder {
        let configuration = HTTP1WebSocketUpgradeChannel.Configuration(
            http1: http1, ws: WebSocketServerConfiguration(maxFrameSize: 1 << 20, autoPing: .enabled(timePeriod: .seconds(30))))
        // The upgrade channel sets its HTTP handlers (and with them the head and idle timeouts) up
        // only after the first head: the first head gets its deadlines in front of them.
        return HTTPServerBuilder { responder in
            FirstHeadDeadlineChannel(base: HTTP1WebSocketUpgradeChannel(responder: responder, configuration: configuration) { request, _, _ in
                guard request.path?.split(separator: "?", maxSplits: 1).first.map(String.init) == path else { return .dontUpgrade }
                return .upgrade([:]) { inbound, outbound, _ in
                    // A client that sends faster than the session reads loses the oldest (a session
                    // needs a handful of messages: the bindings).
                    let (messages, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(16))
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                for try await message in inbound.messages(maxSize: 1 << 16) {
                                    if case .text(let text) = message { continuation.yield(text) }
                                }
                            } catch {
                                logger.debug("websocket closed: \(error)")
                            }
                            continuation.finish()
                        }
                        await session(messages) { text in try await outbound.writeTextMessage(text) }
                        continuation.finish()
                        group.cancelAll()
                    }
                }
            }, head: headerTimeout, idle: idleTimeout)
        }
    }

    /// - Parameter services: background work run beside the HTTP server in one service group (the
    ///   MLLP listener, the sweeps, the change-feed dispatcher), shut down gracefully with it on
    ///   SIGTERM or SIGINT, after it.
    public static func make(settings: Settings, components: Components, logger: Logger,
                            services: [any Service] = []) throws -> some ApplicationProtocol {
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [RequestHeadTimeoutHandler(timeout: settings.headerTimeout, logger: logger),
                                                                          ExpectContinueHandler()],
                                               idleTimeout: settings.idleTimeout)
        var server = HTTPServerBuilder.http1(configuration: http1)
        if let path = components.socketPath, let session = components.socketSession {
            server = webSockets(http1: http1, path: path, headerTimeout: settings.headerTimeout, idleTimeout: settings.idleTimeout,
                                session: session, logger: logger)
        }
        if let tls = settings.tls {
            server = try .tls(server, tlsConfiguration: serverTLS(certificate: tls.certificate, key: tls.key))
        }
        return Application(
            router: router(settings: settings, components: components),
            server: server,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "Huitong"),
            services: services,
            logger: logger)
    }
}
