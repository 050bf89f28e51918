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
    /// How long an event is kept (for delivery, and for `$events` to replay): 30 days; the sweep of
    /// expired platform records removes it then.
    static let retention: Int64 = 30 * 24 * 3600 * 1_000_000

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
    /// The event counts this node committed (valid while the checkpoints are its own).
    private let knownCounts = Mutex<[String: Int]>([:])

    /// Subscriptions with the same owner see the same rows of a type.
    static func ownerKey(_ definition: SubscriptionDefinition, _ type: String) -> String {
        (definition.owner.map { "\($0.kind.rawValue) \($0.subject) \($0.role.rawValue) \($0.facility ?? "") \($0.scopes) \($0.patient ?? "")" } ?? definition.id)
            + " " + type
    }

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
            if parts.count < 2 || parts[1] != node {
                try await subscriptions.reload()
                knownCounts.withLock { $0 = [:] }   // and the counts it numbered
            }
            // A batch handed over again (a crash between the commit below and the feed's position):
            // skip through the last change already handled.
            if let i = changes.firstIndex(where: { Self.changeID($0) == parts[0] }) { todo = changes[(i + 1)...] }
        }
        guard let last = todo.last else { return }
        // 1. What each change matches, in change order.
        var matched: [(subscription: SubscriptionDirectory.Active, change: ResourceChange, lastUpdated: Int64)] = []
        for change in todo {
            if change.key.type == "Subscription" {
                try await subscriptions.refresh(change.key.id)
                continue
            }
            guard !change.deleted, subscriptions.watches(change.key.type) else { continue }
            guard let record = try await service.store.vread(change.key, version: change.version), let content = record.content,
                  case .object(let resource) = try JSONParser.parse(Array(content.readableBytesView)) else { continue }
            let entries = QueryMatcher.Entries(extractor.entries(for: resource, type: change.key.type))
            var version = ChangedVersion(change: change, lastUpdated: record.lastUpdated, entries: entries)
            for subscription in subscriptions.active(for: change.key.type, entries: entries, at: now)
            where try await matches(subscription, &version) {
                matched.append((subscription, change, record.lastUpdated))
            }
        }
        // 2. What the owners may read: one question per owner and type for the whole batch.
        var readable: [String: Set<ResourceKey>] = [:]
        var asked: [String: (definition: SubscriptionDefinition, type: String, keys: Set<ResourceKey>)] = [:]
        for m in matched {
            let key = Self.ownerKey(m.subscription.definition, m.change.key.type)
            asked[key, default: (m.subscription.definition, m.change.key.type, [])].keys.insert(m.change.key)
        }
        for (key, question) in asked {
            guard let scope = try await ownerScope(question.definition, type: question.type) else { continue }
            readable[key] = try await service.store.readable(Array(question.keys), scope: scope)
        }
        // 3. The events, numbered per subscription in change order.
        var counts: [String: Int] = [:]
        var records: [RecordWrite] = []
        var created = 0
        let cached = knownCounts.withLock { $0 }
        for m in matched where readable[Self.ownerKey(m.subscription.definition, m.change.key.type)]?.contains(m.change.key) == true {
            let id = m.subscription.definition.id
            if counts[id] == nil {
                if let n = cached[id] { counts[id] = n } else { counts[id] = try await Self.eventCount(id, store: service.store, now: now) }
            }
            let number = counts[id]! + 1
            counts[id] = number
            let event = SubscriptionEvent(number: number, timestamp: m.lastUpdated, type: m.change.key.type, id: m.change.key.id, version: m.change.version)
            records.append(RecordWrite(PlatformRecord(kind: Self.eventKind + id, id: SubscriptionEvent.recordID(number), content: event.content,
                                                      expires: now + Self.retention)))
            created += 1
        }
        for (id, n) in counts { records.append(RecordWrite(PlatformRecord(kind: Self.countKind, id: id, content: String(n)))) }
        records.append(RecordWrite(PlatformRecord(kind: Self.checkpointKind, id: "last", content: Self.changeID(last) + " " + node)))
        try await service.store.commitRecords(records)
        knownCounts.withLock { known in for (id, n) in counts { known[id] = n } }
        if !counts.isEmpty {
            pending.add(counts.keys)
            metrics?.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "huitong_subscription_events_total", unitName: "",
                                                 helpText: "Notification events queued: matches the subscription's owner may read"),
                labels: []).increment(by: Int64(created))
        }
    }

    /// How many events a subscription has had.
    public static func eventCount(_ id: String, store: any ResourceStore, now: Int64) async throws -> Int {
        try await store.record(kind: countKind, id: id, now: now).flatMap { Int($0.content) } ?? 0
    }

    /// A committed version as the matching sees it: its index entries, and (read when a topic's
    /// trigger asks) the previous version's.
    struct ChangedVersion {
        let change: ResourceChange
        let lastUpdated: Int64
        let entries: QueryMatcher.Entries
        /// nil: not read yet; .some(nil): none (a create, or after a delete).
        var previous: [IndexEntry]??
        /// Each topic's trigger result for this version, by topic URL.
        var fired: [String: Bool] = [:]
    }

    func matches(_ subscription: SubscriptionDirectory.Active, _ version: inout ChangedVersion) async throws -> Bool {
        let type = version.change.key.type
        if let topic = subscription.topic {
            guard let trigger = topic.triggers[type] else { return false }
            let fired: Bool
            if let known = version.fired[topic.url] {
                fired = known
            } else {
                fired = try await fires(trigger, &version)
                version.fired[topic.url] = fired
            }
            guard fired else { return false }
            guard let filter = subscription.filters[type] else { return true }
            return try await test(filter.matcher, type: type, query: filter.query, version, owner: subscription.definition)
        }
        guard let matcher = subscription.matcher else { return false }
        return try await test(matcher, type: subscription.definition.type, query: subscription.definition.query, version,
                              owner: subscription.definition)
    }

    /// A search against one version: from its entries, else (chains, `_has`, terminology) the store
    /// answers for this one resource, as the subscription's owner would be answered (ADR 016): a
    /// chain or `_has` through rows the owner may not read matches nothing, so that a notification
    /// about the owner's own record says nothing about the others. Not audited as the owner's
    /// search: what the owner is sent is audited when it is delivered.
    func test(_ matcher: QueryMatcher, type: String, query: String, _ version: ChangedVersion,
              owner definition: SubscriptionDefinition) async throws -> Bool {
        let key = version.change.key
        if let local = matcher.matches(type: key.type, id: key.id, lastUpdated: version.lastUpdated, entries: version.entries) {
            return local
        }
        guard let owner = definition.owner else { return false }
        var searches = searches.acting(as: owner.principal)
        searches.auditing = false
        var parsed = try searches.parse(type: type, query: query, strict: true)
        parsed.query.clauses.append(.init(parameter: "_id", parameterType: "token", values: [.id(key.id)]))
        do {
            return try await !searches.run(parsed).matches.isEmpty
        } catch let error as FHIRError where error.category == .forbidden {
            return false   // a type the owner may no longer search
        }
    }

    /// A topic's trigger (R5 `queryCriteria`): the previous version against `previous` (a create
    /// counts as `resultForCreate`), this one against `current`, both or either; or a change of status.
    func fires(_ t: SubscriptionDirectory.CompiledTrigger, _ version: inout ChangedVersion) async throws -> Bool {
        let key = version.change.key
        if version.previous == nil {
            var previous: [IndexEntry]?
            if version.change.version > 1, let record = try await service.store.vread(key, version: version.change.version - 1), !record.deleted,
               let content = record.content, case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)) {
                previous = extractor.entries(for: o, type: key.type)
            }
            version.previous = .some(previous)
        }
        let previous = (version.previous ?? nil).map(QueryMatcher.Entries.init)
        guard t.trigger.interactions.contains(previous == nil ? "create" : "update") else { return false }
        var results: [Bool] = []
        if let m = t.previous {
            results.append(previous.map { m.matches(type: key.type, id: key.id, lastUpdated: 0, entries: $0) ?? false } ?? t.trigger.resultForCreate)
        }
        if let m = t.current {
            results.append(m.matches(type: key.type, id: key.id, lastUpdated: version.lastUpdated, entries: version.entries) ?? false)
        }
        if t.trigger.statusChanged {
            func status(_ entries: [IndexEntry]) -> Set<String> {
                Set(entries.compactMap { e in
                    if e.parameter == "status", case .token(_, let code) = e.value { return code } else { return nil }
                })
            }
            results.append(previous.map { status($0.all) != status(version.entries.all) } ?? true)
        }
        return results.isEmpty || (t.trigger.requireBoth ? !results.contains(false) : results.contains(true))
    }

    /// The rows the owner may read now (nil: the owner may not read the type at all).
    func ownerScope(_ definition: SubscriptionDefinition, type: String) async throws -> ReadScope? {
        guard let owner = definition.owner else { return nil }
        let acting = service.acting(as: owner.principal)
        do {
            try acting.policy.authorize(owner.principal, .read, type)
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
        /// The resource types it watches.
        let types: Set<String>
        /// A criteria subscription's search.
        let matcher: QueryMatcher?
        /// A topic subscription's topic, and its filters by resource type.
        let topic: CompiledTopic?
        let filters: [String: (query: String, matcher: QueryMatcher)]
    }

    /// A topic's triggers with their searches parsed, by resource type.
    struct CompiledTopic: Sendable {
        let url: String
        let triggers: [String: CompiledTrigger]
    }

    struct CompiledTrigger: Sendable {
        let trigger: SubscriptionTopic.Trigger
        let previous: QueryMatcher?
        let current: QueryMatcher?
    }

    let store: any ResourceStore
    let searches: SearchService
    let ttl: Duration
    /// The active subscriptions of a type: those filed under one of a change's keys
    /// (`QueryMatcher.keys`: a code or reference their criteria require), and the rest.
    struct TypeIndex {
        var keyed: [String: [Active]] = [:]
        var unkeyed: [Active] = []
    }

    private let state = Mutex<(loaded: ContinuousClock.Instant?, all: [String: Active], byType: [String: TypeIndex]?)>((nil, [:], nil))
    /// The platform's topics, compiled once.
    let topics: [String: CompiledTopic]

    public init(store: any ResourceStore, searches: SearchService, ttl: Duration = .seconds(5)) {
        self.store = store
        let searches = searches.acting(as: .platform)
        self.searches = searches
        self.ttl = ttl
        var topics: [String: CompiledTopic] = [:]
        for topic in SubscriptionTopic.all {
            var triggers: [String: CompiledTrigger] = [:]
            for t in topic.triggers {
                func compile(_ query: String?) -> QueryMatcher? {
                    query.flatMap { try? searches.parse(type: t.type, query: $0, strict: true) }.map { QueryMatcher($0.query) }
                }
                triggers[t.type] = CompiledTrigger(trigger: t, previous: compile(t.previous), current: compile(t.current))
            }
            topics[topic.url] = CompiledTopic(url: topic.url, triggers: triggers)
        }
        self.topics = topics
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
        state.withLock { $0 = (now, found, nil) }
        return Array(found.values)
    }

    /// Active subscriptions on resources of `type` that a change with these entries may match
    /// (loaded once; then kept by `refresh`).
    func active(for type: String, entries: QueryMatcher.Entries? = nil, at now: Int64) -> [Active] {
        let index = state.withLock { s -> TypeIndex? in
            if s.byType == nil {
                var byType: [String: TypeIndex] = [:]
                for a in s.all.values where a.definition.status == "active" {
                    for t in a.types {
                        if let keys = a.matcher?.keys {
                            for k in keys { byType[t, default: TypeIndex()].keyed[k, default: []].append(a) }
                        } else {
                            byType[t, default: TypeIndex()].unkeyed.append(a)
                        }
                    }
                }
                s.byType = byType
            }
            return s.byType?[type]
        }
        guard let index else { return [] }
        var found = index.unkeyed
        if !index.keyed.isEmpty {
            if let entries {
                var seen: Set<String> = []
                for k in entries.keys {
                    for a in index.keyed[k] ?? [] where seen.insert(a.definition.id).inserted { found.append(a) }
                }
            } else {
                var seen: Set<String> = []
                for list in index.keyed.values {
                    for a in list where seen.insert(a.definition.id).inserted { found.append(a) }
                }
            }
        }
        return found.filter { ($0.definition.end ?? .max) > now }
    }

    /// Whether any active subscription watches changes of `type`.
    func watches(_ type: String) -> Bool {
        if state.withLock({ $0.byType == nil }) { _ = active(for: type, at: 0) }
        return state.withLock { s in s.byType?[type].map { !$0.unkeyed.isEmpty || !$0.keyed.isEmpty } ?? false }
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
        state.withLock {
            $0.all[id] = active
            $0.byType = nil
        }
    }

    func parse(_ id: String, _ record: ResourceRecord, owner: String?) -> Active? {
        guard let content = record.content, case .object(let o) = try? JSONParser.parse(Array(content.readableBytesView)),
              let definition = SubscriptionDefinition(id: id, version: record.version, o, owner: owner.flatMap { .init(record: $0) }) else { return nil }
        if let url = definition.topic {
            guard let topic = topics[url] else { return nil }
            var filters: [String: (query: String, matcher: QueryMatcher)] = [:]
            for (type, query) in definition.filters {
                guard let parsed = try? searches.parse(type: type, query: query, strict: true) else { return nil }
                filters[type] = (query, QueryMatcher(parsed.query))
            }
            return Active(definition: definition, types: Set(topic.triggers.keys), matcher: nil, topic: topic, filters: filters)
        }
        guard let parsed = try? searches.parse(type: definition.type, query: definition.query, strict: true) else { return nil }
        return Active(definition: definition, types: [definition.type], matcher: QueryMatcher(parsed.query), topic: nil, filters: [:])
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
