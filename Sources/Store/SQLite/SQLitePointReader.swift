import NIOCore
import Synchronization
// The SQLite library SQLiteNIO vendors (no system library). Reads by id call it directly, see ADR 004.
import VaporCSQLite

/// Read-by-id and vread on their own read-only connections, run synchronously on the
/// calling thread with statements prepared once. A point lookup takes microseconds; the
/// two thread hops of a thread-pool round trip cost more than the lookup itself (ADR 004).
final class SQLitePointReader: Sendable {
    private final class Slot: Sendable {
        let connection: Mutex<SQLiteRawConnection>
        init(_ c: sending SQLiteRawConnection) { connection = Mutex(c) }
    }

    private let slots: [Slot]
    private let next = Atomic<Int>(0)

    // Written so that the plan cannot depend on the statistics (a key lookup, then a row id or
    // version lookup): with statistics from a nearly empty store, `resource JOIN resource_history`
    // was planned as two table scans, and every read scanned the store (SQLiteStore.open).
    static let readSQL = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource_history h
        WHERE h.hid = (SELECT hid FROM resource INDEXED BY resource_key WHERE type = ? AND id = ?)
        """
    static let vreadSQL = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource_history h INDEXED BY history_version
        WHERE h.rid = (SELECT rid FROM resource INDEXED BY resource_key WHERE type = ? AND id = ?) AND h.version = ?
        """

    init(path: String, connections: Int, contentFiles: ContentFiles) throws {
        var slots: [Slot] = []
        for _ in 0..<connections {
            let c = try SQLiteRawConnection(path: path, readOnly: true)
            c.contentFiles = contentFiles
            // No memory map: a read after another connection's commit drops the cache, and with a
            // map also unmaps the file (a TLB shootdown on every core); these reads touch a
            // few dozen pages, cheaper to copy.
            try c.exec("PRAGMA cache_size = -32768")
            _ = try c.statement(Self.readSQL)
            _ = try c.statement(Self.vreadSQL)
            slots.append(Slot(c))
        }
        self.slots = slots
    }

    func read(_ key: ResourceKey) throws -> ResourceRecord? {
        try withConnection { c in try Self.run(c, Self.readSQL, key, version: nil) }
    }

    func vread(_ key: ResourceKey, version: Int) throws -> ResourceRecord? {
        try withConnection { c in try Self.run(c, Self.vreadSQL, key, version: version) }
    }

    /// Runs a short indexed query once per set of parameters, on one connection, with the
    /// statement prepared once per connection. Only for lookups that take microseconds (they
    /// run on the calling thread): the master index's blocking-key and link lookups.
    func rows(_ sql: String, _ bindings: [[SQLValue]]) throws -> [[[SQLValue]]] {
        try withConnection { c in try bindings.map { try c.query(sql, $0) } }
    }

    /// Takes a free connection without waiting when one is free; otherwise waits for one.
    private func withConnection<T>(_ body: (SQLiteRawConnection) throws -> T) throws -> T {
        let start = next.wrappingAdd(1, ordering: .relaxed).oldValue
        for i in 0..<slots.count {
            let slot = slots[(start + i) % slots.count]
            if let result = try slot.connection.withLockIfAvailable({ c in try body(c) }) { return result }
        }
        return try slots[start % slots.count].connection.withLock { c in try body(c) }
    }

    private static func run(_ c: SQLiteRawConnection, _ sql: String, _ key: ResourceKey, version: Int?) throws -> ResourceRecord? {
        // A C string ends at a NUL: "id\0x" would read "id". No stored type or id holds one.
        guard key.isStorable else { return nil }
        let statement = try c.statement(sql)
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
                guard rc == SQLITE_ROW else { throw StoreError.storage("Read of \(key) failed: \(c.errorMessage)") }
                let v = Int(sqlite_nio_sqlite3_column_int64(statement, 0))
                let time = sqlite_nio_sqlite3_column_int64(statement, 1)
                let method = sqlite_nio_sqlite3_column_text(statement, 2).map { String(cString: $0) } ?? ""
                var content: ByteBuffer?
                if sqlite_nio_sqlite3_column_type(statement, 3) != SQLITE_NULL {
                    content = try c.blob(statement, 3)
                }
                return ResourceRecord(key: key, version: v, lastUpdated: time, deleted: content == nil, method: method, content: content)
            }
        }
    }

    /// How often the read statements were re-prepared (SQLITE_STMTSTATUS_REPREPARE), summed over connections.
    func reprepareCount() -> Int {
        slots.reduce(0) { sum, slot in
            sum + slot.connection.withLock { c in
                ((try? c.statement(Self.readSQL)).map { Int(sqlite_nio_sqlite3_stmt_status($0, SQLITE_STMTSTATUS_REPREPARE, 0)) } ?? 0)
                    + ((try? c.statement(Self.vreadSQL)).map { Int(sqlite_nio_sqlite3_stmt_status($0, SQLITE_STMTSTATUS_REPREPARE, 0)) } ?? 0)
            }
        }
    }

    func close() {
        for slot in slots {
            slot.connection.withLock { c in c.close() }
        }
    }
}
