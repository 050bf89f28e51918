import FHIRModel
import Store
import Synchronization

/// Stored Patients as matching reads them — content in clear and match features — by version.
/// The same candidates come up registration after registration (residents sharing a surname and
/// birth year, a family's phone number), and reading one (parse, decrypt its ID and phone
/// numbers, normalise names and addresses) cost more than scoring it. A version that changed is
/// read again, so an entry is never stale; the store's record is still read for its version.
final class CandidateCache: Sendable {
    struct Entry: Sendable {
        let version: Int
        let resource: JSONObject
        let features: PatientFeatures
    }

    /// Two generations: when the current one is full it becomes the previous one (what was not
    /// used since is dropped), so the entries in use stay and memory stays bounded.
    private struct Generations {
        var current: [ResourceKey: Entry] = [:]
        var previous: [ResourceKey: Entry] = [:]
    }

    private let state = Mutex(Generations())
    /// Entries per generation (each a few kilobytes: at most ~2 × this many kept).
    let capacity: Int

    init(capacity: Int = 8_192) {
        self.capacity = capacity
    }

    /// The entry for `key` if it was read at `version`.
    func entry(_ key: ResourceKey, version: Int) -> Entry? {
        state.withLock { g in
            if let e = g.current[key] { return e.version == version ? e : nil }
            guard let e = g.previous.removeValue(forKey: key), e.version == version else { return nil }
            Self.insert(e, for: key, into: &g, capacity: capacity)
            return e
        }
    }

    func store(_ entry: Entry, for key: ResourceKey) {
        state.withLock { g in Self.insert(entry, for: key, into: &g, capacity: capacity) }
    }

    private static func insert(_ entry: Entry, for key: ResourceKey, into g: inout Generations, capacity: Int) {
        if g.current.count >= capacity, g.current[key] == nil {
            g.previous = g.current
            g.current = [:]
            g.current.reserveCapacity(capacity)
        }
        g.current[key] = entry
    }

    var count: Int { state.withLock { $0.current.count + $0.previous.count } }
}
