import Synchronization

/// Wakes change-feed consumers when changes may have been committed: fired by the store after
/// each commit with resource writes (and, on PostgreSQL, when another node's commit is announced
/// by `NOTIFY`). A waiter that missed a firing sees it by its generation, so no wake-up is lost.
public final class ChangeSignal: Sendable {
    private struct State {
        var generation = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// How many times it has fired.
    public var generation: Int { state.withLock { $0.generation } }

    public func fire() {
        let waiting = state.withLock { s in
            s.generation += 1
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Returns once it has fired since `generation` was read, or after `timeout`; returns the
    /// generation now.
    @discardableResult
    public func wait(since generation: Int, timeout: Duration) async -> Int {
        let id = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.release(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.generation != generation || Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.release(id)
        }
        timer.cancel()
        return self.generation
    }

    private func release(_ id: Int) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume()
    }
}
