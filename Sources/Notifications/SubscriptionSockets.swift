import Access
import FHIRModel
import Foundation
import Logging
import NIOCore
import Platform
import Store
import Synchronization

/// The websocket channel of the Subscriptions Backport IG (ADR 023). A client asks
/// `$get-ws-binding-token` for a short-lived token naming its websocket subscriptions, opens the
/// `websocket-url` (`/ws/subscriptions`) and sends `bind-with-token <token>`; it gets a handshake
/// per subscription at once, then the subscriptions' notifications as text messages. The
/// notifications are the stored events delivered in order by `SubscriptionDelivery`, as for a
/// rest-hook: while no client is bound nothing is lost, the events wait and go out from where
/// delivery stopped when a client binds again (on any node; the one holding the subscription's
/// lease sends them). The sockets bound on this node are kept here.
public final class SubscriptionSockets: Sendable {
    public static let path = "/ws/subscriptions"
    static let tokenKind = "subscription-ws-token"
    static let usedKind = "subscription-ws-token-used"
    /// How long a binding token may be used to bind (once).
    static let tokenLifetime: Int64 = 300 * 1_000_000
    /// Sockets bound to one subscription on one node, and subscriptions on one socket.
    static let maxSockets = 8
    static let maxBindings = 64
    /// A socket that binds nothing within this is closed.
    static let bindDeadline: Duration = .seconds(60)
    /// Sockets open on this node at most (bound or not); more are closed at once.
    static let maxOpen = 2048
    /// A socket that sends this many messages that bind nothing is closed.
    static let maxBadMessages = 8

    /// One open socket: its messages are written one at a time, in the order sent.
    final class Connection: Sendable {
        let write: @Sendable (String) async throws -> Void
        private let tail = Mutex<Task<Void, any Error>?>(nil)

        init(write: @escaping @Sendable (String) async throws -> Void) {
            self.write = write
        }

        func send(_ text: String) async throws {
            let task = tail.withLock { last -> Task<Void, any Error> in
                let previous = last
                let next = Task { [write] in
                    _ = await previous?.result
                    try await write(text)
                }
                last = next
                return next
            }
            try await task.value
        }
    }

    struct Binding {
        let connection: Connection
        /// The handshake went out: notifications may follow.
        var ready: Bool
    }

    let service: FHIRService
    let baseURL: String
    let pending: PendingDeliveries
    let logger: Logger
    private let bound = Mutex<(bySubscription: [String: [Binding]], released: Set<String>)>(([:], []))
    private let open = Mutex(0)

    public init(service: FHIRService, baseURL: String, pending: PendingDeliveries, logger: Logger) {
        self.service = service.acting(as: .platform)
        self.baseURL = baseURL
        self.pending = pending
        self.logger = logger
    }

    /// The websocket URL beside a FHIR base: `https://host/fhir` → `wss://host/ws/subscriptions`.
    public static func url(base: String) -> String {
        var root = base.hasSuffix("/") ? String(base.dropLast()) : base
        if root.hasSuffix("/fhir") { root = String(root.dropLast(5)) }
        if root.hasPrefix("https://") { root = "wss://" + root.dropFirst(8) } else if root.hasPrefix("http://") { root = "ws://" + root.dropFirst(7) }
        return root + path
    }

    // MARK: Tokens

    /// A binding token for `ids` (websocket subscriptions the caller may see notifications of,
    /// checked by the operation), stored as its hash.
    static func issue(_ ids: [String], store: any ResourceStore, now: Int64) async throws -> (token: String, expires: Int64) {
        let token = ClientRegistry.randomToken()
        let expires = now + tokenLifetime
        let content = JSONWriter.string(.object(JSONObject([("subscriptions", .array(ids.map { .string($0) }))])))
        try await store.commitRecords([RecordWrite(PlatformRecord(kind: tokenKind, id: ClientRegistry.sha256Hex(token), content: content, expires: expires))])
        return (token, expires)
    }

    /// The subscriptions a token binds, once: a token used before, expired or unknown binds nothing.
    func redeem(_ token: String, now: Int64) async throws -> [String]? {
        let hash = ClientRegistry.sha256Hex(token)
        guard let record = try await service.store.record(kind: Self.tokenKind, id: hash, now: now),
              let ids = (try? JSONParser.parse(Array(record.content.utf8)))?["subscriptions"]?.arrayValue?.compactMap(\.stringValue) else { return nil }
        do {
            try await service.store.commitRecords([RecordWrite(PlatformRecord(kind: Self.usedKind, id: hash, content: "", expires: record.expires),
                                                               mode: .insertNew(now: now))])
        } catch StoreError.recordExists {
            return nil
        }
        return ids
    }

    // MARK: Sessions

    /// Serves one socket until it closes (or binds nothing within a minute): `incoming` are its
    /// text messages, `send` writes one.
    public func session(_ incoming: AsyncStream<String>, send: @escaping @Sendable (String) async throws -> Void) async {
        let admitted = open.withLock { n -> Bool in
            guard n < Self.maxOpen else { return false }
            n += 1
            return true
        }
        guard admitted else {
            try? await send(Self.outcome("throttled", "Too many sockets are open on this node; try again later"))
            return
        }
        let connection = Connection(write: send)
        defer {
            unbind(connection)
            open.withLock { $0 -= 1 }
        }
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { [self] in
                var bad = 0
                for await message in incoming {
                    if await !handle(message, connection) {
                        bad += 1
                        if bad >= Self.maxBadMessages { break }
                    }
                }
                return true
            }
            group.addTask { [self] in
                try? await Task.sleep(for: Self.bindDeadline)
                return !isBound(connection)
            }
            while let finished = await group.next() {
                if finished { break }
            }
            group.cancelAll()
        }
    }

    /// Whether the message bound the socket to a subscription.
    @discardableResult
    func handle(_ message: String, _ connection: Connection) async -> Bool {
        guard let token = Self.bindToken(message) else {
            try? await connection.send(Self.outcome("invalid", "Send 'bind-with-token <token>' with a token from $get-ws-binding-token"))
            return false
        }
        var boundAny = false
        do {
            let now = SubscriptionDelivery.nowMicros
            guard let ids = try await redeem(token, now: now) else {
                try await connection.send(Self.outcome("security", "The binding token is unknown, expired or used already; ask $get-ws-binding-token again"))
                return false
            }
            for id in ids {
                guard let definition = try await definition(id), definition.channel == .websocket, definition.status == "active" else {
                    try await connection.send(Self.outcome("not-found", "Subscription/\(id) is not an active websocket subscription"))
                    continue
                }
                guard bind(id, connection) else {
                    try await connection.send(Self.outcome("throttled", "Subscription/\(id) has \(Self.maxSockets) sockets bound on this node, or this socket \(Self.maxBindings) subscriptions"))
                    continue
                }
                // The handshake first; then what waits (delivered by the node holding the lease).
                let count = try await SubscriptionEngine.eventCount(id, store: service.store, now: now)
                let handshake = NotificationBundle.make(base: baseURL, subscription: definition, status: "active", kind: .handshake,
                                                        eventsSinceStart: count, events: [], content: definition.content, now: now)
                try await connection.send(JSONWriter.string(handshake))
                markReady(id, connection)
                pending.add([id])
                boundAny = true
            }
        } catch {
            logger.warning("Subscription socket: \(error)")
            try? await connection.send(Self.outcome("exception", "The binding failed (incident \(Incident.report(error)))"))
        }
        return boundAny
    }

    /// `bind-with-token <token>`, `bind-with-token: <token>`, or `{"type": "bind-with-token", "payload": {"token": …}}`.
    static func bindToken(_ message: String) -> String? {
        let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("{") {
            guard let o = try? JSONParser.parse(Array(text.utf8)), o["type"]?.stringValue == "bind-with-token" else { return nil }
            return o["payload"]?["token"]?.stringValue
        }
        guard text.hasPrefix("bind-with-token") else { return nil }
        var rest = text.dropFirst("bind-with-token".count)
        if rest.first == ":" { rest = rest.dropFirst() }
        let token = rest.trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    static func outcome(_ code: String, _ text: String) -> String {
        JSONWriter.string(.object(JSONObject([
            ("resourceType", .string("OperationOutcome")),
            ("issue", .array([.object(JSONObject([("severity", .string("error")), ("code", .string(code)), ("diagnostics", .string(text))]))])),
        ])))
    }

    func definition(_ id: String) async throws -> SubscriptionDefinition? {
        guard let record = try await service.store.read(ResourceKey("Subscription", id)), !record.deleted, let content = record.content,
              case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)) else { return nil }
        let owner = try await service.store.record(kind: SubscriptionDefinition.ownerKind, id: id, now: 0)
        return SubscriptionDefinition(id: id, version: record.version, o, owner: owner.flatMap { .init(record: $0.content) })
    }

    // MARK: Bindings

    /// Reserves a place for the socket (not yet sent to: its handshake goes first, then `markReady`).
    func bind(_ id: String, _ connection: Connection) -> Bool {
        bound.withLock { b in
            let here = b.bySubscription[id] ?? []
            if here.contains(where: { $0.connection === connection }) { return true }
            let onSocket = b.bySubscription.values.filter { $0.contains { $0.connection === connection } }.count
            guard here.count < Self.maxSockets, onSocket < Self.maxBindings else { return false }
            b.bySubscription[id, default: []].append(Binding(connection: connection, ready: false))
            b.released.remove(id)
            return true
        }
    }

    func markReady(_ id: String, _ connection: Connection) {
        bound.withLock { b in
            guard let i = b.bySubscription[id]?.firstIndex(where: { $0.connection === connection }) else { return }
            b.bySubscription[id]?[i].ready = true
        }
    }

    func isBound(_ connection: Connection) -> Bool {
        bound.withLock { $0.bySubscription.values.contains { $0.contains { $0.connection === connection } } }
    }

    func unbind(_ connection: Connection) {
        let emptied = bound.withLock { b -> Bool in
            var emptied = false
            for (id, list) in b.bySubscription where list.contains(where: { $0.connection === connection }) {
                let rest = list.filter { $0.connection !== connection }
                b.bySubscription[id] = rest.isEmpty ? nil : rest
                if rest.isEmpty {
                    emptied = true
                    b.released.insert(id)
                }
            }
            return emptied
        }
        if emptied { pending.wake() }
    }

    /// Whether a socket on this node takes the subscription's notifications.
    public func isBound(_ id: String) -> Bool {
        bound.withLock { b in b.bySubscription[id]?.contains { $0.ready } == true }
    }

    /// Subscriptions whose last socket on this node closed since the last call (their lease can go).
    func takeReleased() -> Set<String> {
        bound.withLock { b in
            let r = b.released
            b.released = []
            return r
        }
    }

    /// Sends a notification to every socket bound to the subscription here whose handshake went
    /// out; true when at least one took it.
    func send(_ id: String, _ text: String) async -> Bool {
        let connections = bound.withLock { $0.bySubscription[id] ?? [] }.filter(\.ready).map(\.connection)
        var any = false
        for connection in connections {
            do {
                try await connection.send(text)
                any = true
            } catch {
                continue
            }
        }
        return any
    }
}
