import Synchronization

/// Locks on names, for async code: `acquire` takes a whole set of names at once (so two holders
/// can never wait for each other), waiting while any of them is held. Names are granted in arrival
/// order: a newcomer does not overtake an earlier waiter that wants one of its names.
///
/// The master index plans a unit with Patients under the names of its Patients and of their
/// blocking keys: two registrations that could be the same resident plan one after the other and
/// the second finds the first's Person; registrations sharing nothing plan side by side and share
/// the writer's next group commit.
final class NamedLocks: Sendable {
    private struct Waiter {
        let names: Set<String>
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var held: Set<String> = []
        var waiters: [Waiter] = []
    }

    private let state = Mutex(State())

    /// Waits until every name in `names` is free, then holds them all.
    func acquire(_ names: Set<String>) async {
        guard !names.isEmpty else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                if s.held.isDisjoint(with: names) && s.waiters.allSatisfy({ $0.names.isDisjoint(with: names) }) {
                    s.held.formUnion(names)
                    return true
                }
                s.waiters.append(Waiter(names: names, continuation: continuation))
                return false
            }
            if granted { continuation.resume() }
        }
    }

    /// Frees `names` (held by the caller) and wakes the waiters that can now hold all of theirs.
    func release(_ names: Set<String>) {
        guard !names.isEmpty else { return }
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.held.subtract(names)
            var woken: [CheckedContinuation<Void, Never>] = []
            var wantedEarlier = Set<String>()
            s.waiters.removeAll { w in
                if s.held.isDisjoint(with: w.names) && wantedEarlier.isDisjoint(with: w.names) {
                    s.held.formUnion(w.names)
                    woken.append(w.continuation)
                    return true
                }
                wantedEarlier.formUnion(w.names)
                return false
            }
            return woken
        }
        for c in woken { c.resume() }
    }

    /// Names held now (for tests).
    var held: Set<String> { state.withLock { $0.held } }
}
