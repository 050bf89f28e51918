import Access
import AsyncHTTPClient
import FHIRModel
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Platform
import Prometheus
import Store
import Synchronization

/// Delivers the events of rest-hook and websocket subscriptions (ADR 023): per subscription in event order, at
/// least once — an event counts as delivered only after the endpoint answered 2xx, and the count is
/// saved every 20 and at the end of a run — with the event number in every notification so that a receiver drops a
/// repeat. A failing endpoint is tried again after 1 s, 2 s, 4 s ... (at most `maxBackoff`) until
/// `horizon` has passed since the first failure; the subscription is then set to `error` with the
/// reason. A requested subscription gets its handshake first and becomes `active` when the endpoint
/// takes it. One node delivers a subscription at a time: it holds the subscription's lease (a
/// platform record that expires after `lease`, renewed while delivering), which another node takes
/// over when the holder dies.
public final class SubscriptionDelivery: Sendable {
    static let stateKind = "subscription-delivery"
    static let saveEvery = 20
    static let leaseKind = "subscription-lease"

    public struct Settings: Sendable {
        public var horizon: Duration = .seconds(24 * 3600)
        public var maxBackoff: Duration = .seconds(300)
        public var lease: Duration = .seconds(30)
        public var requestTimeout: Duration = .seconds(10)
        public var concurrency = 16
        /// How often every subscription is looked at, not only those with new events on this node.
        public var sweep: Duration = .seconds(1)
        public init() {}
    }

    /// What a subscription's delivery has reached.
    struct State: Sendable, Equatable {
        var delivered = 0
        var failures = 0
        /// Microseconds: no attempt before; the first failure of the current run of failures.
        var next: Int64 = 0
        var since: Int64 = 0
        var error: String?
        /// When the last notification (or heartbeat) went out.
        var sent: Int64 = 0

        init() {}

        init(_ content: String) {
            guard let o = (try? JSONParser.parse(Array(content.utf8)))?.objectValue else { return }
            func int(_ k: String) -> Int64 { o[k]?.numberText.flatMap { Int64($0) } ?? 0 }
            delivered = Int(int("delivered"))
            failures = Int(int("failures"))
            next = int("next")
            since = int("since")
            sent = int("sent")
            error = o["error"]?.stringValue
        }

        var content: String {
            var o = JSONObject([("delivered", .number(String(delivered))), ("failures", .number(String(failures))),
                                ("next", .number(String(next))), ("since", .number(String(since))), ("sent", .number(String(sent)))])
            if let error { o["error"] = .string(error) }
            return JSONWriter.string(.object(o))
        }
    }

    let service: FHIRService
    let subscriptions: SubscriptionDirectory
    let settings: Settings
    let baseURL: String
    let pending: PendingDeliveries
    let logger: Logger
    let metrics: PrometheusCollectorRegistry?
    let client: HTTPClient
    /// The websocket channel's sockets bound on this node (nil: no websocket channel).
    let sockets: SubscriptionSockets?
    let node = UUID().uuidString
    /// Each subscription's delivery state as this node last saw it (what a sweep skips by).
    private let known = Mutex<[String: State]>([:])
    /// The subscriptions being served now, and those that got new events meanwhile.
    private let busy = Mutex<(serving: Set<String>, again: Set<String>)>(([], []))

    public init(service: FHIRService, subscriptions: SubscriptionDirectory, baseURL: String, pending: PendingDeliveries,
                settings: Settings = Settings(), sockets: SubscriptionSockets? = nil, metrics: PrometheusCollectorRegistry? = nil, logger: Logger) {
        self.service = service.acting(as: .platform)
        self.sockets = sockets
        self.subscriptions = subscriptions
        self.baseURL = baseURL
        self.pending = pending
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(Int64(settings.requestTimeout.components.seconds)))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static var nowMicros: Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

    /// Delivers until cancelled: the subscriptions this node's engine gave new events at once, and
    /// every subscription at least every `sweep` (other nodes' events, retries, handshakes,
    /// heartbeats). Each subscription is served by a task of its own (at most `concurrency` at a
    /// time), so a slow endpoint holds up only its own subscription.
    public func run() async {
        logger.info("Subscription delivery: node \(node)")
        await withDiscardingTaskGroup { group in
            var swept = ContinuousClock.now - settings.sweep
            while !Task.isCancelled {
                let seen = pending.signal.generation
                do {
                    for id in sockets?.takeReleased() ?? [] { try await release(id) }
                    let free = settings.concurrency - busy.withLock { $0.serving.count }
                    var definitions: [SubscriptionDefinition] = []
                    if ContinuousClock.now - swept >= settings.sweep {
                        // Every subscription, the queued ones first.
                        swept = ContinuousClock.now
                        let queued = pending.take()
                        let all = try await due(nil)
                        let byID = Dictionary(all.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                        let first = Set(queued)
                        let waiting = try await waiting(all.filter { !first.contains($0.id) })
                        definitions = queued.compactMap { byID[$0] } + waiting
                    } else if free > 0 {
                        let ids = pending.take(free)
                        if !ids.isEmpty {
                            let byID = Dictionary(try await due(Set(ids)).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                            definitions = ids.compactMap { byID[$0] }
                        }
                    }
                    var later: [String] = []
                    for definition in definitions {
                        let id = definition.id
                        let started = busy.withLock { b -> Bool? in
                            if b.serving.contains(id) {
                                b.again.insert(id)   // served now: again when that ends
                                return nil
                            }
                            guard b.serving.count < settings.concurrency else { return false }
                            b.serving.insert(id)
                            return true
                        }
                        guard let started else { continue }
                        // No slot free: served when one frees, its place in the queue kept.
                        guard started else { later.append(id); continue }
                        group.addTask { [self] in
                            defer {
                                let again = busy.withLock { b in
                                    b.serving.remove(id)
                                    return b.again.remove(id) != nil
                                }
                                if again { pending.add([id]) } else { pending.wake() }
                            }
                            do {
                                try await serve(definition)
                            } catch {
                                logger.warning("Subscription/\(id): \(error)")
                            }
                        }
                    }
                    pending.putBack(later)
                } catch {
                    if Task.isCancelled { break }
                    logger.warning("Subscription delivery round failed: \(error)")
                }
                _ = await pending.signal.wait(since: seen, timeout: .milliseconds(100))
            }
        }
        try? await client.shutdown()
    }

    /// The subscriptions to serve: rest-hooks, and websockets with a socket bound on this node;
    /// `only` these (nil: all).
    func due(_ only: Set<String>?) async throws -> [SubscriptionDefinition] {
        try await subscriptions.all().map(\.definition).filter { d in
            guard ["requested", "active"].contains(d.status), only?.contains(d.id) ?? true else { return false }
            switch d.channel {
            case .restHook: return true
            case .websocket: return d.status == "active" && sockets?.isBound(d.id) == true
            }
        }
    }

    /// Of the subscriptions not queued here, those with something to do: events this node has not
    /// seen delivered (numbered by another node's engine, or delivered by another node: one count
    /// read for all), a retry or heartbeat due, a handshake to make, or never looked at since this
    /// node started. The rest cost nothing per sweep.
    func waiting(_ definitions: [SubscriptionDefinition]) async throws -> [SubscriptionDefinition] {
        let now = Self.nowMicros
        let counts = try await service.store.records(kind: SubscriptionEngine.countKind, now: now)
            .reduce(into: [String: Int]()) { $0[$1.id] = Int($1.content) ?? 0 }
        let known = self.known.withLock { $0 }
        return definitions.filter { d in
            guard d.status == "active", let k = known[d.id] else { return true }
            if (counts[d.id] ?? 0) > k.delivered || (k.next > 0 && k.next <= now) { return true }
            if let period = d.heartbeat, period > 0, now - k.sent >= Int64(period) * 1_000_000 { return true }
            return false
        }
    }

    /// What serving a subscription left: its state as saved.
    func remember(_ id: String, _ state: State) {
        known.withLock { $0[id] = state }
    }

    /// Gives the lease up (this node's last socket of the subscription closed), so that a node
    /// with a socket takes over at once rather than after the lease runs out.
    func release(_ id: String) async throws {
        let now = Self.nowMicros
        guard sockets?.isBound(id) != true, let held = try await service.store.record(kind: Self.leaseKind, id: id, now: now),
              held.content == node else { return }
        try await service.store.commitRecords([.delete(kind: Self.leaseKind, id: id)])
    }

    /// Takes or renews the subscription's lease; false when another node holds it.
    func lease(_ id: String, now: Int64) async throws -> Bool {
        let expires = now + Int64(settings.lease.components.seconds) * 1_000_000
        let mine = PlatformRecord(kind: Self.leaseKind, id: id, content: node, expires: expires)
        if let held = try await service.store.record(kind: Self.leaseKind, id: id, now: now) {
            guard held.content == node else { return false }
            // Renewed only when half of it is gone (one write per 15 s, not per notification).
            if let old = held.expires, old - now > expires - old { return true }
            try await service.store.commitRecords([RecordWrite(mine)])
            return true
        }
        do {
            try await service.store.commitRecords([RecordWrite(mine, mode: .insertNew(now: now))])
            return true
        } catch StoreError.recordExists {
            return false
        }
    }

    func state(_ id: String, now: Int64) async throws -> State {
        try await service.store.record(kind: Self.stateKind, id: id, now: now).map { State($0.content) } ?? State()
    }

    func save(_ id: String, _ state: State) async throws {
        try await service.store.commitRecords([RecordWrite(PlatformRecord(kind: Self.stateKind, id: id, content: state.content))])
        remember(id, state)
    }

    func serve(_ definition: SubscriptionDefinition) async throws {
        // A websocket subscription is served only by a node with a socket bound to it (and its
        // lease is given up when the last one closes).
        func mayServe() -> Bool { definition.channel != .websocket || sockets?.isBound(definition.id) == true }
        guard mayServe() else { return }
        var now = Self.nowMicros
        var state = try await state(definition.id, now: now)
        remember(definition.id, state)
        guard state.next <= now, try await lease(definition.id, now: now) else { return }
        if definition.status == "requested" {
            let bundle = NotificationBundle.make(base: baseURL, subscription: definition, status: "requested", kind: .handshake,
                                                 eventsSinceStart: 0, events: [], content: definition.content, now: now)
            if try await post(definition, bundle, &state, now: now) {
                try await setStatus(definition, "active", error: nil)
            }
            try await save(definition.id, state)
            return
        }
        let kind = SubscriptionEngine.eventKind + definition.id
        // The count is saved every `saveEvery` notifications (and at the end): a node that dies sends
        // at most that many again, with their numbers; the lease is looked at every few seconds
        // (it lasts 30).
        var unsaved = 0, leaseChecked = now
        while !Task.isCancelled {
            let page = try await service.store.records(kind: kind, after: SubscriptionEvent.recordID(state.delivered), limit: 100, now: now)
            if page.isEmpty { break }
            let parsed = page.compactMap { r in Int(r.id).flatMap { SubscriptionEvent(number: $0, content: r.content) } }
            guard !parsed.isEmpty else { break }
            // One notification carries up to the subscription's max-count events, in order.
            for start in stride(from: 0, to: parsed.count, by: definition.eventsPerNotification) {
                var events: [(SubscriptionEvent, JSON?)] = []
                for event in parsed[start..<min(parsed.count, start + definition.eventsPerNotification)] {
                    events.append((event, try await focus(definition, event)))
                }
                now = Self.nowMicros
                if now - leaseChecked > 5_000_000 {
                    guard mayServe(), try await lease(definition.id, now: now) else { return }
                    leaseChecked = now
                }
                let last = events[events.count - 1].0
                let bundle = NotificationBundle.make(base: baseURL, subscription: definition, status: "active", kind: .eventNotification,
                                                     eventsSinceStart: last.number, events: events, content: definition.content, now: now)
                guard try await post(definition, bundle, &state, now: now) else {
                    try await save(definition.id, state)
                    unsaved = 0
                    return
                }
                state.delivered = last.number
                unsaved += events.count
                metrics?.makeGauge(
                    descriptor: MetricNameDescriptor(metricName: "huitong_subscription_lag_seconds", unitName: "",
                                                     helpText: "From an event's commit to its notification's delivery, of the last one delivered"),
                    labels: [("channel", definition.channel.rawValue)])
                    .set(Double(Self.nowMicros - last.timestamp) / 1_000_000)
                if unsaved >= Self.saveEvery {
                    try await save(definition.id, state)
                    unsaved = 0
                }
            }
        }
        if unsaved > 0 {
            try await save(definition.id, state)
            unsaved = 0
        }
        // Heartbeat when nothing went out for the subscription's period.
        now = Self.nowMicros
        if let period = definition.heartbeat, period > 0, now - state.sent >= Int64(period) * 1_000_000 {
            let count = try await SubscriptionEngine.eventCount(definition.id, store: service.store, now: now)
            let bundle = NotificationBundle.make(base: baseURL, subscription: definition, status: "active", kind: .heartbeat,
                                                 eventsSinceStart: count, events: [], content: definition.content, now: now)
            _ = try await post(definition, bundle, &state, now: now)
            try await save(definition.id, state)
        }
    }

    /// The focus resource for a `full-resource` notification, read on the owner's behalf (audited
    /// like any read); nil when the owner may no longer read it (the event goes out without it).
    func focus(_ definition: SubscriptionDefinition, _ event: SubscriptionEvent) async throws -> JSON? {
        guard definition.content == .fullResource, let owner = definition.owner else { return nil }
        do {
            let result = try await service.acting(as: owner.principal).vread(event.type, event.id, version: String(event.version))
            guard let content = result.content else { return nil }
            return try JSONParser.parse(Array(content.readableBytesView))
        } catch let error as FHIRError where !error.category.isServerFault {
            return nil
        }
    }

    /// Sends a notification (POSTs it to a rest-hook; writes it to the bound sockets); on failure
    /// records it and when to try again (a rest-hook gives up after the horizon; a websocket
    /// subscription waits for its next socket).
    func post(_ definition: SubscriptionDefinition, _ bundle: JSON, _ state: inout State, now: Int64) async throws -> Bool {
        if definition.channel == .websocket {
            if await sockets?.send(definition.id, JSONWriter.string(bundle)) == true {
                delivered(definition, &state, now: now)
                return true
            }
            count(definition, "failed")
            state.error = "No socket took the notification"
            state.next = now + 1_000_000
            return false
        }
        guard let endpoint = definition.endpoint else { return false }
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/fhir+json")
        for (name, value) in definition.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(bundle)))
        let problem: String
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(settings.requestTimeout.components.seconds)))
            _ = try? await response.body.collect(upTo: 1 << 16)
            if (200..<300).contains(response.status.code) {
                delivered(definition, &state, now: now)
                return true
            }
            problem = "the endpoint answered \(response.status.code)"
        } catch {
            problem = "the endpoint could not be reached (\(error))"
        }
        count(definition, "failed")
        if state.failures == 0 {
            state.since = now
            // The run of failures begins: the Subscription says so (its `error`, the last one,
            // shown by a search), once per run rather than at every retry.
            try? await setStatus(definition, nil, error: "\(FHIRDateTime.formatInstant(micros: now)): \(problem)")
        }
        state.failures += 1
        state.error = problem
        let backoff = min(Double(settings.maxBackoff.components.seconds), pow(2, Double(min(state.failures - 1, 30))))
        state.next = now + Int64(backoff * 1_000_000)
        if now - state.since >= Int64(settings.horizon.components.seconds) * 1_000_000 {
            try await setStatus(definition, "error", error: "Delivery failed since \(FHIRDateTime.formatInstant(micros: state.since)): \(problem)")
        }
        return false
    }

    func delivered(_ definition: SubscriptionDefinition, _ state: inout State, now: Int64) {
        count(definition, "delivered")
        state.failures = 0
        state.since = 0
        state.next = 0
        state.error = nil
        state.sent = now
    }

    func count(_ definition: SubscriptionDefinition, _ outcome: String) {
        metrics?.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "huitong_subscription_notifications_total", unitName: "",
                                             helpText: "Notifications sent (handshakes, events, heartbeats), by channel and outcome (delivered, failed)"),
            labels: [("channel", definition.channel.rawValue), ("outcome", outcome)]).increment()
    }

    /// Sets the stored Subscription's status (nil: as stored now) and `error`, as the platform.
    func setStatus(_ definition: SubscriptionDefinition, _ status: String?, error: String?) async throws {
        let key = ResourceKey("Subscription", definition.id)
        guard let record = try await service.store.read(key), !record.deleted, let content = record.content,
              case .object(var o) = try JSONParser.parse(Array(content.readableBytesView)) else { return }
        // The owner stopped it meanwhile: it stays off.
        if o["status"]?.stringValue == "off" { return }
        if let status { o["status"] = .string(status) }
        o["error"] = error.map { .string($0) }
        do {
            _ = try await service.writePipeline.write([.generated(o, key: key, method: "PUT", ifMatch: record.version, validate: false)],
                                                      as: .operation("subscription-status"))
        } catch let e as FHIRError where e.category == .preconditionFailed {
            return   // changed meanwhile: the next round reads it again
        }
        try await subscriptions.refresh(definition.id)
    }
}
