import Logging
import NIOPosix
import Synchronization
// The SQLite library SQLiteNIO vendors (no system library), see ADR 004.
import VaporCSQLite

/// Copies the write-ahead log into the database file in the background, so that no commit
/// pays for it. With SQLite's automatic checkpoint, the commit that crosses 1,000 WAL pages
/// runs the checkpoint itself, fsync included: one write in ~60 took 15–20 ms and set the p99
/// of every write path. Here the writer's connection has `wal_autocheckpoint = 0` and a
/// connection of its own runs a PASSIVE checkpoint (never blocks the writer or readers) a few
/// times a second, on its own thread. Durability is unchanged: a committed write is in the WAL
/// before the commit returns, checkpointed or not.
final class SQLiteCheckpointer: Sendable {
    private struct Handle: @unchecked Sendable {
        var db: OpaquePointer?
    }

    private let handle: Mutex<Handle>
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let logger: Logger

    init(path: String, interval: Duration = .milliseconds(250), logger: Logger) throws {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        guard sqlite_nio_sqlite3_open_v2(path, &db, flags, nil) == SQLITE_OK else {
            let message = db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close_v2(db)
            throw StoreError.storage("Cannot open \(path) for checkpoints: \(message)")
        }
        // Never its own checkpoint on close racing the writer's; the writer's connection does the last one.
        sqlite_nio_sqlite3_exec(db, "PRAGMA wal_autocheckpoint = 0", nil, nil, nil)
        handle = Mutex(Handle(db: db))
        self.logger = logger
        pool.start()
        let started = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                try? await self.pool.runIfActive { self.checkpoint() }
            }
        }
        task.withLock { $0 = started }
    }

    /// One PASSIVE checkpoint: copies what no reader still needs; cheap when nothing is new.
    @discardableResult
    func checkpoint() -> (walFrames: Int, checkpointed: Int) {
        handle.withLock { h in
            guard let db = h.db else { return (0, 0) }
            var log: Int32 = 0, done: Int32 = 0
            let rc = sqlite_nio_sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done)
            if rc != SQLITE_OK && rc != SQLITE_BUSY {
                logger.warning("WAL checkpoint failed: \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
            }
            return (Int(log), Int(done))
        }
    }

    func close() async {
        task.withLock { $0?.cancel() }
        try? await pool.shutdownGracefully()
        handle.withLock { h in
            sqlite_nio_sqlite3_close_v2(h.db)
            h.db = nil
        }
    }
}
