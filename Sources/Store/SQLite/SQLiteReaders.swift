import NIOPosix
import Synchronization

/// The SQLite store's reader connections as one `SQLExecutor`: searches, history, includes,
/// compartments. Each connection keeps its statements prepared (`SQLiteRawConnection`), so a
/// search shape is planned once per connection, not per request: the access decision adds a few
/// subqueries to every restricted search (ADR 016), whose preparation cost more than running them.
/// Statements run on a thread pool of their own, one per connection, off the cooperative threads
/// (a search may take milliseconds).
final class SQLiteReaders: SQLExecutor, Sendable {
    private final class Slot: Sendable {
        let connection: Mutex<SQLiteRawConnection>
        init(_ c: sending SQLiteRawConnection) { connection = Mutex(c) }
    }

    private let slots: [Slot]
    private let pool: NIOThreadPool
    private let next = Atomic<Int>(0)

    init(path: String, connections: Int, contentFiles: ContentFiles) throws {
        var slots: [Slot] = []
        for _ in 0..<connections {
            let c = try SQLiteRawConnection(path: path, readOnly: true)
            c.contentFiles = contentFiles
            try c.exec("PRAGMA cache_size = -32768")
            try c.exec("PRAGMA mmap_size = 268435456")
            slots.append(Slot(c))
        }
        self.slots = slots
        pool = NIOThreadPool(numberOfThreads: connections)
        pool.start()
    }

    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        let slot = slots[next.wrappingAdd(1, ordering: .relaxed).oldValue % slots.count]
        return try await pool.runIfActive { try slot.connection.withLock { c in try c.query(sql, binds) } }
    }

    func close() async throws {
        for slot in slots { slot.connection.withLock { $0.close() } }
        try await pool.shutdownGracefully()
    }
}
