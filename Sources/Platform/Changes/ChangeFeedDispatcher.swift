import Foundation
import Logging
import Store

/// A consumer of the change feed: a name (its saved position is kept under it, shared by every
/// node) and a handler of committed changes. A domain module registers one to react to writes —
/// notifications, early warning, statistics — without being on the write path.
public struct ChangeConsumer: Sendable {
    public let name: String
    /// Changes at most this many at a time.
    public let batch: Int
    /// Called with changes in commit order; the position moves past them only when it returns, so
    /// a change is handed over at least once (again after a failure or a crash): handlers are
    /// idempotent.
    public let handle: @Sendable ([ResourceChange]) async throws -> Void

    public init(name: String, batch: Int = 500, handle: @escaping @Sendable ([ResourceChange]) async throws -> Void) {
        self.name = name
        self.batch = batch
        self.handle = handle
    }
}

/// Runs the registered consumers (ADR 020): each drains the feed from its saved position, then
/// waits for the store's change signal — fired by this process's commits and, on PostgreSQL, by
/// other nodes' through `LISTEN/NOTIFY` — or for `poll` to pass. One node at a time serves a
/// consumer name: the store refuses a second caller while one is in `consumeChanges` (PostgreSQL:
/// the consumer's row is locked for the call, released when its holder's connection dies), so a
/// consumer moves to another node when its holder stops. Runs until cancelled.
public struct ChangeFeedDispatcher: Sendable {
    public let store: any ResourceStore
    public let consumers: [ChangeConsumer]
    /// How long a consumer waits without a signal before looking again (a commit whose rows are not
    /// yet visible to the feed, a node that was busy with the consumer).
    public let poll: Duration
    let logger: Logger

    public init(store: any ResourceStore, consumers: [ChangeConsumer], poll: Duration = .milliseconds(500), logger: Logger) {
        self.store = store
        self.consumers = consumers
        self.poll = poll
        self.logger = logger
    }

    public func run() async {
        guard !consumers.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Other nodes' commits (returns at once on SQLite).
                while !Task.isCancelled {
                    do {
                        try await store.watchChanges()
                        return
                    } catch {
                        if Task.isCancelled { return }
                        logger.warning("Change notifications interrupted (\(error)); listening again")
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
            for consumer in consumers {
                group.addTask { await serve(consumer) }
            }
        }
    }

    func serve(_ consumer: ChangeConsumer) async {
        let signal = store.changeSignal
        while !Task.isCancelled {
            let seen = signal.generation
            do {
                while try await store.consumeChanges(consumer: consumer.name, limit: consumer.batch, consumer.handle) > 0 {
                    if Task.isCancelled { return }
                }
            } catch {
                if Task.isCancelled { return }
                logger.error("Change consumer '\(consumer.name)' failed (the changes come again): \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
            await signal.wait(since: seen, timeout: poll)
        }
    }
}
