import Foundation
import Logging
import Store

/// Deletes platform records whose time is up: kept rejected HL7 messages (30 days), message
/// control ids, used client-assertion ids, card-code uses. Reads already treat them as absent;
/// the sweep keeps them from filling the table. `serve` runs it at start and then hourly.
public struct ExpiredRecordSweep: Sendable {
    public let store: any ResourceStore
    public let interval: Duration

    public init(store: any ResourceStore, interval: Duration = .seconds(3600)) {
        self.store = store
        self.interval = interval
    }

    /// One sweep: every record that expired before `now` (microseconds since the epoch) goes.
    public func sweep(now: Int64 = Int64(Date().timeIntervalSince1970 * 1_000_000)) async throws {
        try await store.commitRecords([.purgeExpired(before: now)])
    }

    /// Sweeps until the task is cancelled; a failed sweep is logged and tried again next time.
    public func run(logger: Logger) async {
        while !Task.isCancelled {
            do {
                try await sweep()
            } catch {
                logger.warning("Sweep of expired platform records failed: \(error)")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
