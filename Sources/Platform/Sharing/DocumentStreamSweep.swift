import Logging
import Store

/// Removes the document streams (ADR 029) that no stored Binary names: left by a server killed
/// during an upload or before the version naming its stream committed, or by a write that failed
/// on a server error (`FHIRService.writeStreamed` keeps those rather than risk removing a named
/// one). Those are the streams still pending: the commit of the first version naming a stream
/// removes its pending mark in the same transaction, and fails if the mark is gone. Only pending
/// streams nothing was written to for `idleFor` seconds are removed, so an upload in progress is
/// not taken; one that resumes after that fails instead of being acknowledged. `serve` runs it
/// at start and then hourly.
public struct DocumentStreamSweep: Sendable {
    public let store: any ResourceStore
    public let idleFor: Int
    public let interval: Duration

    public init(store: any ResourceStore, idleFor: Int = 3600, interval: Duration = .seconds(3600)) {
        self.store = store
        self.idleFor = idleFor
        self.interval = interval
    }

    /// One sweep: the number of streams removed, and the failures (a stream that could not be
    /// removed keeps its mark and is tried again next time; the others go on).
    public func sweep() async throws -> (removed: Int, failures: [String]) {
        let streams = store.documentStreams
        var removed = 0
        var failures: [String] = []
        for stream in try await streams.pending(idleFor: idleFor) {
            do {
                if try await streams.discardIdle(stream.id, idleFor: idleFor) { removed += 1 }
            } catch {
                failures.append("\(stream.id): \(error)")
            }
        }
        return (removed, failures)
    }

    /// Sweeps until the task is cancelled; a failed sweep is logged and tried again next time.
    public func run(logger: Logger) async {
        while !Task.isCancelled {
            do {
                let (removed, failures) = try await sweep()
                if removed > 0 { logger.info("Document streams: removed \(removed) that no Binary names (uploads cut short or failed)") }
                for failure in failures { logger.warning("Document stream not removed, tried again next time: \(failure)") }
            } catch {
                logger.warning("Sweep of abandoned document streams failed: \(error)")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
