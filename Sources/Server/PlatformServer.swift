import Cards
import Gateway
import HL7v2
import HTTPAPI
import Hummingbird
import Logging
import Notifications
import Platform
import ServiceLifecycle
import Sharing
import Store
import Terminology

/// The platform put together from a configuration (ADR 021): one FHIR service — and so one write
/// pipeline and master-index lock — shared by HTTP, the HL7 v2 gateway and the card service; the
/// operation registry; the background work as lifecycle services. The only place that knows every
/// module; `huitong serve` and the HTTP tests build the platform through it.
public struct PlatformServer: Sendable {
    public let store: any ResourceStore
    public let configuration: PlatformConfiguration
    public let service: FHIRService
    public let searches: SearchService
    /// The HL7 v2 gateway (nil: no MLLP listener configured).
    public let gateway: HL7Gateway?
    /// The subscriptions (ADR 023): what the change feed's "subscriptions" consumer matches and the
    /// delivery service sends.
    public let subscriptions: SubscriptionDirectory
    /// The subscriptions this node's engine gave new events, for its delivery loop.
    let notified: PendingDeliveries
    /// The websocket channel's sockets on this node (`/ws/subscriptions`).
    public let sockets: SubscriptionSockets
    /// The FHIR base URL notifications name (`--public-url`, else the listener's address).
    let baseURL: String

    public init(store: any ResourceStore, configuration: PlatformConfiguration) {
        self.store = store
        self.configuration = configuration
        let pipeline = IngestPipeline(maxBodyBytes: configuration.maxBodyBytes, sensitive: configuration.sensitive,
                                      protection: configuration.identifiers)
        var service = FHIRService(store: store, pipeline: pipeline, matching: configuration.matching, auditing: configuration.audit)
        var searches = SearchService(store: store)
        searches.auditing = configuration.audit
        searches.masterIndex = service.masterIndex
        searches.protection = configuration.identifiers
        searches.valueSets = ValueSetExpander(store: store)
        self.searches = searches
        // Facilities' local codes get the regional standard coding beside them (ADR 022); a client's
        // Subscription gets its owner and status (ADR 023).
        // A result of a catalogue item gets its HR mark (ADR 024), after the standard coding it may be found by.
        let enrichers: [any WriteEnricher] = [FacilityCodeMaps(store: store), SubscriptionWrites(store: store, searches: searches),
                                              RecognitionMarks(store: store), RecognitionDecisionWrites(store: store), ReadReceipts(store: store, protection: configuration.identifiers)]
        service.enricher = EnricherChain(enrichers)
        // An order for a test with a recognisable prior result raises a DetectedIssue (ADR 024),
        // judged by the service as it is so far.
        service.enricher = EnricherChain(enrichers + [DuplicateTestCheck(service: service), DocumentSharing(service: service)])
        self.service = service
        subscriptions = SubscriptionDirectory(store: store, searches: searches)
        baseURL = (configuration.publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
            ?? "\(configuration.tls == nil ? "http" : "https")://\(configuration.host):\(configuration.port)") + "/fhir"
        let notified = PendingDeliveries()
        self.notified = notified
        sockets = SubscriptionSockets(service: service, baseURL: baseURL, pending: notified, logger: Logger(label: "huitong.subscriptions"))
        gateway = configuration.mllp.map { _ in HL7Gateway(service: service, metrics: configuration.metrics) }
    }

    /// What the HTTP routes call.
    public var components: HuitongApplication.Components {
        var components = HuitongApplication.Components(service: service, searches: searches, operations: configuration.operations,
                                                       tokens: configuration.tokens,
                                                       cards: configuration.cards.map { ($0, configuration.cardSettings) },
                                                       hl7: gateway?.counters, metrics: configuration.metrics)
        let sockets = self.sockets
        components.socketPath = SubscriptionSockets.path
        components.socketSession = { messages, send in await sockets.session(messages, send: send) }
        return components
    }

    /// The HTTP routes alone (the tests drive them in-process).
    public func router() -> Router<HuitongRequestContext> {
        HuitongApplication.router(settings: configuration.http, components: components)
    }

    /// Serves until SIGTERM or SIGINT: first the rebuild a migration left pending, then the MLLP
    /// listener, then one service group — the HTTP server, the MLLP listener, the expired-record
    /// and document-stream sweeps and the change-feed dispatcher. `dataLocation` is said in the log (no password). On shutdown the HTTP server stops first (finishing
    /// its requests), then the MLLP listener (finishing its messages), then the sweep and the
    /// dispatcher; the caller closes the store last, which flushes the audit spool.
    public func run(logger: Logger, dataLocation: String) async throws {
        try await PendingReindex.runIfPending(store: store, pipeline: service.pipeline, logger: logger)
        // The platform's subscription topics, readable as Basic (ADR 023).
        try await SubscriptionTopic.publish(service: service)
        // The recognition decision codes (ADR 024).
        try await RecognitionDecision.publish(service: service)

        let engine = SubscriptionEngine(service: service, searches: searches, subscriptions: subscriptions, pending: notified,
                                        metrics: configuration.metrics, logger: logger)
        let delivery = SubscriptionDelivery(service: service, subscriptions: subscriptions, baseURL: baseURL, pending: notified,
                                            settings: configuration.subscriptionDelivery, sockets: sockets, metrics: configuration.metrics, logger: logger)
        var services: [any Service] = [
            ExpiredRecordSweepService(sweep: ExpiredRecordSweep(store: store), logger: logger),
            DocumentStreamSweepService(sweep: DocumentStreamSweep(store: store, idleFor: configuration.documentStreamSweepAfter), logger: logger),
            ChangeFeedService(dispatcher: ChangeFeedDispatcher(store: store, consumers: configuration.changeConsumers + [engine.consumer], logger: logger)),
            SubscriptionDeliveryService(delivery: delivery),
        ]
        if let interval = configuration.reminderInterval {
            services.append(ReminderSweepService(reminders: ReminderService(service: service, searches: searches, interval: interval,
                                                                            metrics: configuration.metrics, logger: logger)))
        }
        var mllp: MLLPServer?
        if let settings = configuration.mllp, let gateway {
            guard !settings.tls || configuration.tls != nil else {
                throw FHIRError(.invalid, code: "invalid", "MLLP over TLS needs the HTTPS certificate and key")
            }
            let tls = try configuration.tls.flatMap { settings.tls ? try HuitongApplication.serverTLS(certificate: $0.certificate, key: $0.key) : nil }
            let server = try await MLLPServer.start(host: configuration.host, port: settings.port, maxMessageBytes: settings.maxMessageBytes,
                                                    tls: tls) { frame, peer in
                await gateway.handle(frame, peer: peer)
            }
            logger.info("HL7 v2 (MLLP\(settings.tls ? " over TLS" : "")) listening on \(configuration.host):\(server.port)")
            services.append(MLLPService(server: server, logger: logger))
            mllp = server
        }
        do {
            let app = try HuitongApplication.make(settings: configuration.http, components: components, logger: logger, services: services)
            if configuration.development {
                logger.warning("DEVELOPMENT MODE (开发模式): requests without a token act as a development administrator")
            }
            if !configuration.audit { logger.warning("NO AUDIT: nothing is recorded (benchmark baseline only)") }
            logger.info("Huitong serving FHIR R4 at \(configuration.tls == nil ? "http" : "https")://\(configuration.host):\(configuration.port)/fhir (data: \(dataLocation))")
            try await app.runService()
        } catch {
            try? await mllp?.close()
            throw error
        }
        try? await mllp?.close()
    }
}
