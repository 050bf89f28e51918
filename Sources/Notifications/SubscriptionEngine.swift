import Access
import FHIRModel
import Foundation
import NIOCore
import Logging
import Platform
import Prometheus
import Store
import Synchronization

/// Turns committed changes into numbered notification events (ADR 023). A change-feed consumer
/// (one node at a time serves it): every change of a type some active subscription watches is
/// matched against each such subscription's criteria from the resource's own index entries
/// (`QueryMatcher`; criteria that need other rows ask the store for that one resource), and a
/// match the subscription's owner may read becomes the subscription's next event. The events, the
/// per-subscription counts and the last change handled are committed together, so a batch handed
/// over again after a crash numbers nothing twice.
public final class SubscriptionEngine: Sendable {
    public static let consumerName = "subscriptions"
    static let eventKind = "subscription-event:"
    static let countKind = "subscription-count"
    static let checkpointKind = "subscription-engine"

    let service: FHIRService
    let searches: SearchService
    let extractor = IndexExtractor()
    let subscriptions: SubscriptionDirectory
    let logger: Logger
    /// Told which subscriptions have new events (the delivery loop on this node).
    let pending: PendingDeliveries
    let metrics: PrometheusCollectorRegistry?

    public init(service: FHIRService, searches: SearchService, subscriptions: SubscriptionDirectory, pending: PendingDeliveries,
                metrics: PrometheusCollectorRegistry? = nil, logger: Logger) {
        self.metrics = metrics
        self.service = service.acting(as: .platform)
        self.searches = searches.acting(as: .platform)
        self.subscriptions = subscriptions
        self.pending = pending
        self.logger = logger
    }

    public var consumer: ChangeConsumer {
        ChangeConsumer(name: Self.consumerName, batch: 500) { [self] changes in try await handle(changes) }
    }

    static func changeID(_ c: ResourceChange) -> String { "\(c.key.type)/\(c.key.id)/\(c.version)" }
    /// This process, in the checkpoint.
    let node = UUID().uuidString

    func handle(_ changes: [ResourceChange]) async throws {
        try await subscriptions.ensureLoaded()
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        var todo = changes[...]
        // The checkpoint: the last change handled, and by which node ("<change> <node>").
        if let checkpoint = try await service.store.record(kind: Self.checkpointKind, id: "last", now: now) {
            let parts = checkpoint.content.split(separator: " ", maxSplits: 1).map(String.init)
            // Another node handled the batches since this one's last: the Subscription changes among
            // them refreshed its memory, not this node's. Read them all again (the store is at least
            // as new as these changes), or a subscription activated there would be missed here.
            if parts.count < 2 || parts[1] != node { try await subscriptions.reload() }
            // A batch handed over again (a crash between the commit below and the feed's position):
            // skip through the last change already handled.
            if let i = changes.firstIndex(where: { Self.changeID($0) == parts[0] }) { todo = changes[(i + 1)...] }
        }
        guard let last = todo.last else { return }
        var counts: [String: Int] = [:]
        var scopes: [String: ReadScope?] = [:]
        var records: [RecordWrite] = []
        var created = 0
        for change in todo {
            if change.key.type == "Subscription" {
                try await subscriptions.refresh(change.key.id)
                continue
            }
            let watching = subscriptions.active(for: change.key.type, at: now)
            guard !watching.isEmpty, !change.deleted else { continue }
            guard let record = try await service.store.vread(change.key, version: change.version), let content = record.content,
                  case .object(let resource) = try JSONParser.parse(Array(content.readableBytesView)) else { continue }
            let entries = extractor.entries(for: resource, type: change.key.type)
            for subscription in watching {
                guard try await matches(subscription, change, record.lastUpdated, entries) else { continue }
                if scopes[subscription.definition.id] == nil {
                    scopes[subscription.definition.id] = try await ownerScope(subscription.definition)
                }
                guard let scope = scopes[subscription.definition.id] ?? nil,
                      try await service.store.readable([change.key], scope: scope).contains(change.key) else { continue }
                let id = subscription.definition.id
                if counts[id] == nil { counts[id] = try await Self.eventCount(id, store: service.store, now: now) }
                let number = counts[id]! + 1
                counts[id] = number
                let event = SubscriptionEvent(number: number, timestamp: record.lastUpdated, type: change.key.type, id: change.key.id, version: change.version)
                records.append(RecordWrite(PlatformRecord(kind: Self.eventKind + id, id: SubscriptionEvent.recordID(number), content: event.content)))
                created += 1
            }
        }
        for (id, n) in counts { records.append(RecordWrite(PlatformRecord(kind: Self.countKind, id: id, content: String(n)))) }
        records.append(RecordWrite(PlatformRecord(kind: Self.checkpointKind, id: "last", content: Self.changeID(last) + " " + node)))
        try await service.store.commitRecords(records)
        if !counts.isEmpty {
            pending.add(counts.keys)
            metrics?.makeCounter(name: "huitong_subscription_events_total", labels: [],
                                 help: "Notification events queued: matches the subscription's owner may read").increment(by: Int64(created))
        }
    }

    /// How many events a subscription has had.
    public static func eventCount(_ id: String, store: any ResourceStore, now: Int64) async throws -> Int {
        try await store.record(kind: countKind, id: id, now: now).flatMap { Int($0.content) } ?? 0
    }

    func matches(_ subscription: SubscriptionDirectory.Active, _ change: ResourceChange, _ lastUpdated: Int64, _ entries: [IndexEntry]) async throws -> Bool {
        if let local = subscription.matcher.matches(type: change.key.type, id: change.key.id, lastUpdated: lastUpdated, entries: entries) {
            return local
        }
        // Chains, _has and terminology: the store answers for this one resource.
        var parsed = try searches.parse(type: subscription.definition.type, query: subscription.definition.query, strict: true)
        parsed.query.clauses.append(.init(parameter: "_id", parameterType: "token", values: [.id(change.key.id)]))
        return try await !searches.run(parsed).matches.isEmpty
    }

    /// The rows the owner may read now (nil: the owner may not read the type at all).
    func ownerScope(_ definition: SubscriptionDefinition) async throws -> ReadScope? {
        guard let owner = definition.owner else { return nil }
        let acting = service.acting(as: owner.principal)
        do {
            try acting.policy.authorize(owner.principal, .read, definition.type)
            return try await acting.readScope()
        } catch {
            return nil
        }
    }
}

/// The subscriptions the platform serves, kept in memory and refreshed from the store when a
/// Subscription changes (and every `ttl`, for the other nodes' changes).
public final class SubscriptionDirectory: Sendable {
    public struct Active: Sendable {
        public let definition: SubscriptionDefinition
        let matcher: QueryMatcher
    }

    let store: any ResourceStore
    let searches: SearchService
    let ttl: Duration
    private let state = Mutex<(loaded: ContinuousClock.Instant?, all: [String: Active])>((nil, [:]))

    public init(store: any ResourceStore, searches: SearchService, ttl: Duration = .seconds(5)) {
        self.store = store
        self.searches = searches.acting(as: .platform)
        self.ttl = ttl
    }

    /// Every subscription the platform serves (requested, active or in error), fresh within `ttl`.
    public func all() async throws -> [Active] {
        let now = ContinuousClock.now
        if let (loaded, all) = state.withLock({ s in s.loaded.map { ($0, s.all) } }), now - loaded < ttl {
            return Array(all.values)
        }
        var found: [String: Active] = [:]
        let keys = try await store.search(SearchQuery(type: "Subscription", clauses: []), limit: 100_000)
        let owners = try await store.records(kind: SubscriptionDefinition.ownerKind, now: 0).reduce(into: [String: String]()) { $0[$1.id] = $1.content }
        for (key, record) in try await store.read(keys: keys) where !record.deleted {
            if let active = parse(key.id, record, owner: owners[key.id]) { found[key.id] = active }
        }
        state.withLock { $0 = (now, found) }
        return Array(found.values)
    }

    /// Active subscriptions on resources of `type` (loaded once; then kept by `refresh`).
    func active(for type: String, at now: Int64) -> [Active] {
        state.withLock { s in s.all.values.filter { $0.definition.type == type && $0.definition.status == "active" && ($0.definition.end ?? .max) > now } }
    }

    func ensureLoaded() async throws {
        if state.withLock({ $0.loaded == nil }) { _ = try await all() }
    }

    /// Reads every subscription again now.
    func reload() async throws {
        state.withLock { $0.loaded = nil }
        _ = try await all()
    }

    /// Reads one subscription again (after a change of it).
    public func refresh(_ id: String) async throws {
        try await ensureLoaded()
        let record = try await store.read(ResourceKey("Subscription", id))
        let owner = try await store.record(kind: SubscriptionDefinition.ownerKind, id: id, now: 0)?.content
        let active = record.flatMap { $0.deleted ? nil : parse(id, $0, owner: owner) }
        state.withLock { $0.all[id] = active }
    }

    func parse(_ id: String, _ record: ResourceRecord, owner: String?) -> Active? {
        guard let content = record.content, case .object(let o) = try? JSONParser.parse(Array(content.readableBytesView)),
              let definition = SubscriptionDefinition(id: id, version: record.version, o, owner: owner.flatMap { .init(record: $0) }),
              let parsed = try? searches.parse(type: definition.type, query: definition.query, strict: true) else { return nil }
        return Active(definition: definition, matcher: QueryMatcher(parsed.query))
    }
}

/// The subscriptions with events not yet delivered, as far as this node knows (its engine's
/// commits), oldest first: the delivery loop serves these at once, in that order (none starves
/// behind busier ones), and sweeps all subscriptions every second for the rest (other nodes'
/// events, retries, heartbeats).
public final class PendingDeliveries: Sendable {
    private let queue = Mutex<(order: [String], members: Set<String>)>(([], []))
    let signal = ChangeSignal()

    public init() {}

    func add<S: Sequence>(_ new: S) where S.Element == String {
        queue.withLock { q in
            for id in new where q.members.insert(id).inserted { q.order.append(id) }
        }
        signal.fire()
    }

    /// Back at the head of the queue without waking the loop (it could not be started now).
    func putBack(_ ids: [String]) {
        queue.withLock { q in
            let fresh = ids.filter { q.members.insert($0).inserted }
            q.order.insert(contentsOf: fresh, at: 0)
        }
    }

    /// Wakes the loop (a delivery task finished: a slot is free).
    func wake() { signal.fire() }

    /// The oldest `limit` ids, removed from the queue.
    func take(_ limit: Int = .max) -> [String] {
        queue.withLock { q in
            let taken = Array(q.order.prefix(limit))
            q.order.removeFirst(taken.count)
            q.members.subtract(taken)
            return taken
        }
    }

    func clear() {
        queue.withLock { $0 = ([], []) }
    }
}
