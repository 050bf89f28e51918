import NIOCore
import Synchronization
// The SQLite library SQLiteNIO vendors (no system library). Reads by id call it directly, see ADR 004.
import VaporCSQLite

/// Read-by-id and vread on their own read-only connections, run synchronously on the
/// calling thread with statements prepared once. A point lookup takes microseconds; the
/// two thread hops of a thread-pool round trip cost more than the lookup itself (ADR 004).
final class SQLitePointReader: Sendable {
    // Only touched while its slot's mutex is held.
    private struct Connection: @unchecked Sendable {
        var db: OpaquePointer?
        var read: OpaquePointer?
        var vread: OpaquePointer?
        /// Other short indexed queries (`rows`), prepared on first use.
        var statements: [String: OpaquePointer] = [:]
    }

    private final class Slot: Sendable {
        let connection: Mutex<Connection>
        init(_ c: sending Connection) { connection = Mutex(c) }
    }

    private let slots: [Slot]
    private let next = Atomic<Int>(0)

    static let readSQL = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid
        WHERE r.type = ? AND r.id = ?
        """
    static let vreadSQL = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource r JOIN resource_history h ON h.rid = r.rid
        WHERE r.type = ? AND r.id = ? AND h.version = ?
        """

    init(path: String, connections: Int) throws {
        var slots: [Slot] = []
        for _ in 0..<connections {
            var c = Connection()
            let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
            guard sqlite_nio_sqlite3_open_v2(path, &c.db, flags, nil) == SQLITE_OK else {
                let message = c.db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
                sqlite_nio_sqlite3_close_v2(c.db)
                throw StoreError.storage("Cannot open \(path) for reading: \(message)")
            }
            sqlite_nio_sqlite3_busy_timeout(c.db, 10_000)
            sqlite_nio_sqlite3_exec(c.db, "PRAGMA query_only = 1; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -32768", nil, nil, nil)
            c.read = try Self.prepare(c.db, Self.readSQL)
            c.vread = try Self.prepare(c.db, Self.vreadSQL)
            slots.append(Slot(c))
        }
        self.slots = slots
    }

    private static func prepare(_ db: OpaquePointer?, _ sql: String) throws -> OpaquePointer? {
        var statement: OpaquePointer?
        guard sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK else {
            throw StoreError.storage("Cannot prepare statement: \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
        }
        return statement
    }

    func read(_ key: ResourceKey) throws -> ResourceRecord? {
        try withConnection { c in try Self.run(c.read, key, version: nil, db: c.db) }
    }

    func vread(_ key: ResourceKey, version: Int) throws -> ResourceRecord? {
        try withConnection { c in try Self.run(c.vread, key, version: version, db: c.db) }
    }

    /// Runs a short indexed query once per set of parameters, on one connection, with the
    /// statement prepared once per connection. Only for lookups that take microseconds (they
    /// run on the calling thread): the master index's blocking-key and link lookups.
    func rows(_ sql: String, _ bindings: [[SQLValue]]) throws -> [[[SQLValue]]] {
        try withConnection { c in
            let statement: OpaquePointer?
            if let s = c.statements[sql] {
                statement = s
            } else {
                statement = try Self.prepare(c.db, sql)
                c.statements[sql] = statement
            }
            return try bindings.map { binds in try Self.rows(statement, binds, db: c.db) }
        }
    }

    private static func rows(_ statement: OpaquePointer?, _ binds: [SQLValue], db: OpaquePointer?) throws -> [[SQLValue]] {
        defer { sqlite_nio_sqlite3_reset(statement) }
        // SQLITE_TRANSIENT: SQLite copies text and blobs while binding.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, value) in binds.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .integer(let v): sqlite_nio_sqlite3_bind_int64(statement, index, Int64(v))
            case .double(let v): sqlite_nio_sqlite3_bind_double(statement, index, v)
            case .text(let v): sqlite_nio_sqlite3_bind_text(statement, index, v, -1, transient)
            case .blob(let v):
                _ = v.withUnsafeReadableBytes { sqlite_nio_sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
            case .null: sqlite_nio_sqlite3_bind_null(statement, index)
            }
        }
        var result: [[SQLValue]] = []
        let columns = sqlite_nio_sqlite3_column_count(statement)
        while true {
            let rc = sqlite_nio_sqlite3_step(statement)
            if rc == SQLITE_DONE { return result }
            guard rc == SQLITE_ROW else { throw StoreError.storage("Query failed: \(String(cString: sqlite_nio_sqlite3_errmsg(db)))") }
            var row: [SQLValue] = []
            row.reserveCapacity(Int(columns))
            for i in 0..<columns {
                switch sqlite_nio_sqlite3_column_type(statement, i) {
                case SQLITE_INTEGER: row.append(.integer(Int(sqlite_nio_sqlite3_column_int64(statement, i))))
                case SQLITE_FLOAT: row.append(.double(sqlite_nio_sqlite3_column_double(statement, i)))
                case SQLITE_TEXT: row.append(.text(String(cString: sqlite_nio_sqlite3_column_text(statement, i))))
                case SQLITE_BLOB:
                    let count = Int(sqlite_nio_sqlite3_column_bytes(statement, i))
                    row.append(.blob(ByteBuffer(bytes: UnsafeRawBufferPointer(start: sqlite_nio_sqlite3_column_blob(statement, i), count: count))))
                default: row.append(.null)
                }
            }
            result.append(row)
        }
    }

    /// Takes a free connection without waiting when one is free; otherwise waits for one.
    private func withConnection<T>(_ body: (inout Connection) throws -> T) throws -> T {
        let start = next.wrappingAdd(1, ordering: .relaxed).oldValue
        for i in 0..<slots.count {
            let slot = slots[(start + i) % slots.count]
            if let result = try slot.connection.withLockIfAvailable({ c in try body(&c) }) { return result }
        }
        return try slots[start % slots.count].connection.withLock { c in try body(&c) }
    }

    private static func run(_ statement: OpaquePointer?, _ key: ResourceKey, version: Int?, db: OpaquePointer?) throws -> ResourceRecord? {
        // No sqlite3_clear_bindings: it marks the statement expired and forces a re-prepare.
        defer { sqlite_nio_sqlite3_reset(statement) }
        return try key.type.withCString { type in
            try key.id.withCString { id in
                // SQLITE_STATIC (nil destructor): the strings outlive the step below.
                sqlite_nio_sqlite3_bind_text(statement, 1, type, -1, nil)
                sqlite_nio_sqlite3_bind_text(statement, 2, id, -1, nil)
                if let version { sqlite_nio_sqlite3_bind_int64(statement, 3, Int64(version)) }
                let rc = sqlite_nio_sqlite3_step(statement)
                if rc == SQLITE_DONE { return nil }
                guard rc == SQLITE_ROW else {
                    throw StoreError.storage("Read of \(key) failed: \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
                }
                let v = Int(sqlite_nio_sqlite3_column_int64(statement, 0))
                let time = sqlite_nio_sqlite3_column_int64(statement, 1)
                let method = sqlite_nio_sqlite3_column_text(statement, 2).map { String(cString: $0) } ?? ""
                var content: ByteBuffer?
                if sqlite_nio_sqlite3_column_type(statement, 3) != SQLITE_NULL {
                    let count = Int(sqlite_nio_sqlite3_column_bytes(statement, 3))
                    let bytes = sqlite_nio_sqlite3_column_blob(statement, 3)
                    content = ByteBuffer(bytes: UnsafeRawBufferPointer(start: bytes, count: count))
                }
                return ResourceRecord(key: key, version: v, lastUpdated: time, deleted: content == nil, method: method, content: content)
            }
        }
    }

    /// How often the read statements were re-prepared (SQLITE_STMTSTATUS_REPREPARE), summed over connections.
    func reprepareCount() -> Int {
        slots.reduce(0) { sum, slot in
            sum + slot.connection.withLock { c in
                Int(sqlite_nio_sqlite3_stmt_status(c.read, SQLITE_STMTSTATUS_REPREPARE, 0))
                    + Int(sqlite_nio_sqlite3_stmt_status(c.vread, SQLITE_STMTSTATUS_REPREPARE, 0))
            }
        }
    }

    func close() {
        for slot in slots {
            slot.connection.withLock { c in
                sqlite_nio_sqlite3_finalize(c.read)
                sqlite_nio_sqlite3_finalize(c.vread)
                for s in c.statements.values { sqlite_nio_sqlite3_finalize(s) }
                sqlite_nio_sqlite3_close_v2(c.db)
                c = Connection()
            }
        }
    }
}
