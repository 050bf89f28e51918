import FHIRModel
import Foundation
import Logging
import Store

/// Work a schema migration leaves for the next start: rebuilding derived columns and index rows
/// from stored content (ADR 016: the access columns and rules of rows stored before they
/// existed). Runs before the server takes requests, so that no read is decided on rows without
/// their facts; idempotent, so a node stopped halfway (or two nodes at once) just do it again.
public enum PendingReindex {
    public static let record = (kind: "pending", id: "reindex")

    /// Rebuilds every resource's index with `pipeline` when a migration asked for it; returns the
    /// number of resources reindexed (0: nothing was pending).
    @discardableResult
    public static func runIfPending(store: any ResourceStore, pipeline: IngestPipeline, logger: Logger) async throws -> Int {
        guard let pending = try await store.record(kind: record.kind, id: record.id, now: 0) else { return 0 }
        logger.notice("Rebuilding derived index rows before serving: \(pending.content)")
        let start = Date()
        let done = try await store.reindex(type: nil, extract: { pipeline.indexEntries(forStored: $0, type: $1) }) { done, total in
            if done % 10_000 == 0 || done == total { logger.notice("reindexed \(done)/\(total)") }
        }
        try await store.analyze()
        try await store.commitRecords([RecordWrite.delete(kind: record.kind, id: record.id)])
        logger.notice("Reindexed \(done) resources in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        return done
    }
}
