import NIOCore
// The SQLite library SQLiteNIO vendors (no system library). Hot paths call it directly, see ADR 004.
import VaporCSQLite

/// A SQLite connection used through the C API, with each statement prepared once. Not safe
/// for concurrent use: its owner keeps it to one thread at a time (the point reader behind a
/// mutex per connection, the writer on its own thread). A statement takes microseconds here,
/// where a SQLiteNIO query costs a thread-pool round trip and a fresh prepare (ADR 004).
final class SQLiteRawConnection: @unchecked Sendable {
    private(set) var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    /// Where content kept outside the rows lies: a blob holding its marker is read from its file
    /// (ADR 025). Set on every connection of a store before use.
    var contentFiles: ContentFiles?
    /// Statements kept prepared; beyond this many (distinct SQL texts) the cache starts over.
    static let maxStatements = 128

    init(path: String, readOnly: Bool = false) throws {
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        guard sqlite_nio_sqlite3_open_v2(path, &db, flags, nil) == SQLITE_OK else {
            let message = db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close_v2(db)
            throw StoreError.storage("Cannot open \(path): \(message)")
        }
        sqlite_nio_sqlite3_busy_timeout(db, 10_000)
        if readOnly { try exec("PRAGMA query_only = 1") }
    }

    var errorMessage: String { db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "closed" }

    /// Runs statements without results (`BEGIN`, `COMMIT`, `PRAGMA ...`; several separated by `;`).
    func exec(_ sql: String) throws {
        guard sqlite_nio_sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw StoreError.storage("\(sql.prefix(60)): \(errorMessage)")
        }
    }

    /// The prepared statement for `sql`, prepared on first use.
    func statement(_ sql: String) throws -> OpaquePointer {
        if let s = statements[sql] { return s }
        if statements.count >= Self.maxStatements { finalizeAll() }
        var statement: OpaquePointer?
        guard sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK,
              let statement else {
            throw StoreError.storage("Cannot prepare statement: \(errorMessage)")
        }
        statements[sql] = statement
        return statement
    }

    /// Prepared statements for several SQL texts, valid together: the cache starts over (if it
    /// must) before any of them is prepared, never between.
    func statements(_ sqls: [String]) throws -> [OpaquePointer] {
        if statements.count + sqls.filter({ statements[$0] == nil }).count > Self.maxStatements { finalizeAll() }
        return try sqls.map(statement)
    }

    /// Runs a statement from `statements(_:)` once, its parameters bound by `bind` directly (no
    /// `[SQLValue]`, no buffer copies): for rows the writer inserts by the thousand.
    func run(_ statement: OpaquePointer, _ bind: (Binder) throws -> Void) throws {
        defer { sqlite_nio_sqlite3_reset(statement) }
        try bind(Binder(statement: statement, connection: self))
        while try step(statement) {}
    }

    struct Binder {
        let statement: OpaquePointer
        let connection: SQLiteRawConnection

        func integer(_ index: Int32, _ value: Int) throws {
            try check(index, sqlite_nio_sqlite3_bind_int64(statement, index, Int64(value)))
        }

        func text(_ index: Int32, _ value: String) throws {
            var value = value
            try check(index, value.withUTF8 { b in
                guard let base = b.baseAddress else { return sqlite_nio_sqlite3_bind_text(statement, index, "", 0, SQLiteRawConnection.transient) }
                return base.withMemoryRebound(to: CChar.self, capacity: b.count) {
                    sqlite_nio_sqlite3_bind_text(statement, index, $0, Int32(b.count), SQLiteRawConnection.transient)
                }
            })
        }

        /// NULL. A statement keeps its bindings across runs: a column left unbound holds the last run's value.
        func null(_ index: Int32) throws {
            try check(index, sqlite_nio_sqlite3_bind_null(statement, index))
        }

        func blob(_ index: Int32, _ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try blob(index, $0) }
        }

        func blob(_ index: Int32, _ bytes: UnsafeRawBufferPointer) throws {
            try check(index, sqlite_nio_sqlite3_bind_blob(statement, index, bytes.baseAddress, Int32(bytes.count), SQLiteRawConnection.transient))
        }

        /// UTF-8 text where it lies.
        func text(_ index: Int32, _ bytes: UnsafeRawBufferPointer) throws {
            guard let base = bytes.baseAddress, !bytes.isEmpty else {
                return try check(index, sqlite_nio_sqlite3_bind_text(statement, index, "", 0, SQLiteRawConnection.transient))
            }
            try check(index, sqlite_nio_sqlite3_bind_text(statement, index, base.assumingMemoryBound(to: CChar.self), Int32(bytes.count),
                                                          SQLiteRawConnection.transient))
        }

        private func check(_ index: Int32, _ rc: Int32) throws {
            guard rc == SQLITE_OK else { throw StoreError.storage("Cannot bind parameter \(index): \(connection.errorMessage)") }
        }
    }

    /// SQLITE_TRANSIENT: SQLite copies text and blobs while binding.
    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Runs `sql` with `binds` and returns its rows.
    func query(_ sql: String, _ binds: [SQLValue]) throws -> [[SQLValue]] {
        let s = try statement(sql)
        defer { sqlite_nio_sqlite3_reset(s) }
        try bind(s, binds)
        var result: [[SQLValue]] = []
        let columns = sqlite_nio_sqlite3_column_count(s)
        while try step(s) {
            var row: [SQLValue] = []
            row.reserveCapacity(Int(columns))
            for i in 0..<columns { row.append(try column(s, i)) }
            result.append(row)
        }
        return result
    }

    /// Runs `sql` (an insert, update or delete) with `binds`.
    func run(_ sql: String, _ binds: [SQLValue]) throws {
        let s = try statement(sql)
        defer { sqlite_nio_sqlite3_reset(s) }
        try bind(s, binds)
        while try step(s) {}
    }

    /// Runs a prepared statement with `rid` as its first parameter and `binds` after it.
    func run(_ statement: OpaquePointer, rid: Int, _ binds: [SQLValue]) throws {
        defer { sqlite_nio_sqlite3_reset(statement) }
        guard sqlite_nio_sqlite3_bind_int64(statement, 1, Int64(rid)) == SQLITE_OK else {
            throw StoreError.storage("Cannot bind parameter 1: \(errorMessage)")
        }
        try bind(statement, binds, from: 2)
        while try step(statement) {}
    }

    /// Advances a statement: true while it has a row.
    func step(_ statement: OpaquePointer) throws -> Bool {
        switch sqlite_nio_sqlite3_step(statement) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw StoreError.storage(errorMessage)
        }
    }

    func bind(_ statement: OpaquePointer, _ binds: [SQLValue], from first: Int32 = 1) throws {
        let transient = Self.transient
        for (i, value) in binds.enumerated() {
            let index = Int32(i) + first
            let rc: Int32
            switch value {
            case .integer(let v): rc = sqlite_nio_sqlite3_bind_int64(statement, index, Int64(v))
            case .double(let v): rc = sqlite_nio_sqlite3_bind_double(statement, index, v)
            case .text(let v):
                // With its byte length: a NUL inside the text is part of it (`-1` would end the
                // text there, and "id\0" would match "id").
                var text = v
                rc = text.withUTF8 { b in
                    guard let base = b.baseAddress else { return sqlite_nio_sqlite3_bind_text(statement, index, "", 0, transient) }
                    return base.withMemoryRebound(to: CChar.self, capacity: b.count) {
                        sqlite_nio_sqlite3_bind_text(statement, index, $0, Int32(b.count), transient)
                    }
                }
            case .blob(let v):
                rc = v.withUnsafeReadableBytes { sqlite_nio_sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
            case .null: rc = sqlite_nio_sqlite3_bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw StoreError.storage("Cannot bind parameter \(index): \(errorMessage)") }
        }
    }

    func column(_ statement: OpaquePointer, _ i: Int32) throws -> SQLValue {
        switch sqlite_nio_sqlite3_column_type(statement, i) {
        case SQLITE_INTEGER: return .integer(Int(sqlite_nio_sqlite3_column_int64(statement, i)))
        case SQLITE_FLOAT: return .double(sqlite_nio_sqlite3_column_double(statement, i))
        case SQLITE_TEXT: return .text(String(cString: sqlite_nio_sqlite3_column_text(statement, i)))
        case SQLITE_BLOB:
            return .blob(try blob(statement, i))
        default: return .null
        }
    }

    /// A blob column's bytes, read from its file when it holds a content marker (`ContentFiles`).
    func blob(_ statement: OpaquePointer, _ i: Int32) throws -> ByteBuffer {
        let count = Int(sqlite_nio_sqlite3_column_bytes(statement, i))
        let bytes = UnsafeRawBufferPointer(start: sqlite_nio_sqlite3_column_blob(statement, i), count: count)
        guard let contentFiles, count > 0, bytes[0] == 0 else { return ByteBuffer(bytes: bytes) }
        return try contentFiles.resolve(bytes)
    }

    private func finalizeAll() {
        for s in statements.values { sqlite_nio_sqlite3_finalize(s) }
        statements.removeAll()
    }

    func close() {
        finalizeAll()
        sqlite_nio_sqlite3_close_v2(db)
        db = nil
    }
}
