import FHIRModel
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO
import Synchronization

/// The embedded store: one SQLite file in WAL mode, one writer connection doing group
/// commit (`SQLiteWriter`), and a few reader connections used round-robin.
public final class SQLiteStore: ResourceStore {
    public enum Durability: String, Sendable {
        /// WAL with synchronous=NORMAL: a committed write survives the process being killed.
        case normal
        /// synchronous=FULL: every commit is fsynced, surviving power loss too.
        case full
    }

    let readers: [SQLiteConnection]
    let pointReader: SQLitePointReader
    let writer: SQLiteWriter
    private let nextReader = Atomic<Int>(0)
    let logger: Logger

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    public static func open(path: String, durability: Durability = .normal, readers readerCount: Int = 4,
                            logger: Logger = Logger(label: "huitong.store")) async throws -> SQLiteStore {
        let pool = NIOThreadPool(numberOfThreads: max(2, readerCount))
        pool.start()
        let storage: SQLiteConnection.Storage = .file(path: path)
        let writeConnection = try await SQLiteConnection.open(storage: storage, threadPool: pool, logger: logger,
                                                              on: MultiThreadedEventLoopGroup.singleton.any())
        _ = try await writeConnection.query("PRAGMA journal_mode = WAL")
        _ = try await writeConnection.query("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
        _ = try await writeConnection.query("PRAGMA cache_size = -65536")
        _ = try await writeConnection.query("PRAGMA temp_store = MEMORY")
        try await migrate(writeConnection, logger: logger)
        // Keep the planner's statistics current (cheap when nothing changed much).
        _ = try await writeConnection.query("PRAGMA optimize = 0x10002")
        var readers: [SQLiteConnection] = []
        for _ in 0..<readerCount {
            let c = try await SQLiteConnection.open(storage: storage, threadPool: pool, logger: logger,
                                                    on: MultiThreadedEventLoopGroup.singleton.any())
            _ = try await c.query("PRAGMA query_only = 1")
            _ = try await c.query("PRAGMA cache_size = -32768")
            _ = try await c.query("PRAGMA mmap_size = 268435456")
            readers.append(c)
        }
        let writer = try await SQLiteWriter.make(connection: writeConnection, logger: logger)
        let pointReader = try SQLitePointReader(path: path, connections: max(2, readerCount))
        return SQLiteStore(readers: readers, pointReader: pointReader, writer: writer, logger: logger)
    }

    init(readers: [SQLiteConnection], pointReader: SQLitePointReader, writer: SQLiteWriter, logger: Logger) {
        self.readers = readers
        self.pointReader = pointReader
        self.writer = writer
        self.logger = logger
    }

    static func migrate(_ db: SQLiteConnection, logger: Logger) async throws {
        _ = try await db.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        let applied = Set(try await db.query("SELECT version FROM schema_migrations").compactMap { $0.column("version")?.integer })
        for migration in SQLiteMigrations.all where !applied.contains(migration.version) {
            logger.info("Applying migration \(migration.version): \(migration.name)")
            _ = try await db.query("BEGIN IMMEDIATE")
            do {
                for statement in migration.statements { _ = try await db.query(statement) }
                _ = try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, datetime('now'))",
                                       [.integer(migration.version), .text(migration.name)])
                _ = try await db.query("COMMIT")
            } catch {
                _ = try? await db.query("ROLLBACK")
                throw error
            }
        }
    }

    var reader: SQLiteConnection {
        let i = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue
        return readers[i % readers.count]
    }

    static let recordColumns = "r.type, r.id, h.version, h.last_updated, h.method, h.content"

    static func record(_ row: SQLiteRow) -> ResourceRecord? {
        record(row.columns)
    }

    static func record(_ c: [SQLiteColumn]) -> ResourceRecord? {
        guard c.count >= 6, let type = c[0].data.string, let id = c[1].data.string,
              let version = c[2].data.integer, let time = c[3].data.integer, let method = c[4].data.string else { return nil }
        let content = c[5].data.blob
        return ResourceRecord(key: ResourceKey(type, id), version: version, lastUpdated: Int64(time),
                              deleted: content == nil, method: method, content: content)
    }

    public func read(_ key: ResourceKey) async throws -> ResourceRecord? {
        try pointReader.read(key)
    }

    public func vread(_ key: ResourceKey, version: Int) async throws -> ResourceRecord? {
        try pointReader.vread(key, version: version)
    }

    public func history(_ query: HistoryQuery) async throws -> HistoryPage {
        let db = reader
        var conditions: [String] = []
        var binds: [SQLiteData] = []
        if let type = query.type { conditions.append("r.type = ?"); binds.append(.text(type)) }
        if let id = query.id { conditions.append("r.id = ?"); binds.append(.text(id)) }
        if let since = query.since { conditions.append("h.last_updated >= ?"); binds.append(.integer(Int(since))) }
        if let at = query.at {
            // Versions current at some time in [low, high): made before high and not superseded by low.
            conditions.append("h.last_updated < ?")
            binds.append(.integer(Int(at.high)))
            conditions.append("NOT EXISTS (SELECT 1 FROM resource_history n WHERE n.rid = h.rid AND n.version > h.version AND n.last_updated <= ?)")
            binds.append(.integer(Int(at.low)))
        }
        let snapshot: Int64
        if let s = query.snapshot {
            snapshot = s
        } else {
            let rows = try await db.query("SELECT COALESCE(MAX(last_updated), 0) AS t FROM resource_history")
            snapshot = Int64(rows.first?.column("t")?.integer ?? 0)
        }
        conditions.append("h.last_updated <= ?")
        binds.append(.integer(Int(snapshot)))
        let whereClause = " WHERE " + conditions.joined(separator: " AND ")
        let from = " FROM resource_history h JOIN resource r ON r.rid = h.rid"
        let totalRows = try await db.query("SELECT COUNT(*) AS n" + from + whereClause, binds)
        let total = totalRows.first?.column("n")?.integer ?? 0
        let rows = try await db.query(
            "SELECT \(Self.recordColumns)" + from + whereClause + " ORDER BY h.last_updated DESC, h.hid DESC LIMIT ? OFFSET ?",
            binds + [.integer(query.count), .integer(query.offset)])
        return HistoryPage(records: rows.compactMap(Self.record), total: total, snapshot: snapshot)
    }

    public func search(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey] {
        let (sql, binds) = SearchSQL.compile(query, limit: limit)
        return try await reader.query(sql, binds).compactMap { row in
            guard let t = row.column("type")?.string, let id = row.column("id")?.string else { return nil }
            return ResourceKey(t, id)
        }
    }

    public func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage {
        let db = reader
        let (condition, binds) = SearchSQL.whereClause(query)
        let snapshot: Int
        if let s = page.snapshot {
            snapshot = s
        } else {
            snapshot = try await db.query("SELECT COALESCE(MAX(rid), 0) AS m FROM resource").first?.column("m")?.integer ?? 0
        }
        var sql = "SELECT r.rid, \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE "
            + condition + " AND r.rid <= ?"
        var allBinds = binds + [.integer(snapshot)]
        let keyset = query.sort.isEmpty
        if keyset, let after = page.after {
            sql += " AND r.rid > ?"
            allBinds.append(.integer(after))
        }
        var order: [String] = []
        for key in query.sort {
            let (expression, b) = SearchSQL.sortExpression(key, type: query.type)
            order.append(expression)
            allBinds.append(contentsOf: b)
        }
        order.append("r.rid")
        sql += " ORDER BY " + order.joined(separator: ", ") + " LIMIT ? OFFSET ?"
        allBinds.append(contentsOf: [.integer(page.count + 1), .integer(keyset ? 0 : page.offset)])
        let rows = page.count == 0 ? [] : try await db.query(sql, allBinds)
        var records: [ResourceRecord] = []
        var lastRid = page.after ?? 0
        for row in rows.prefix(page.count) {
            let columns = Array(row.columns.dropFirst())
            lastRid = row.columns[0].data.integer ?? lastRid
            if let record = Self.record(columns) { records.append(record) }
        }
        var total: Int?
        if page.withTotal {
            let (countSQL, countBinds) = SearchSQL.indexOnlyCount(query, snapshot: snapshot)
                ?? ("SELECT COUNT(*) AS n FROM resource r WHERE " + condition + " AND r.rid <= ?", binds + [.integer(snapshot)])
            total = try await db.query(countSQL, countBinds).first?.column("n")?.integer
        }
        var next: PageRequest?
        if rows.count > page.count {
            next = PageRequest(count: page.count, offset: keyset ? 0 : page.offset + page.count,
                               after: keyset ? lastRid : nil, snapshot: snapshot, withTotal: page.withTotal)
        }
        return SearchPage(records: records, total: total, next: next)
    }

    public func compartment(of patient: ResourceKey, types: [String]?, since: Int64?, page: PageRequest) async throws -> SearchPage {
        let db = reader
        let snapshot: Int
        if let s = page.snapshot {
            snapshot = s
        } else {
            snapshot = try await db.query("SELECT COALESCE(MAX(rid), 0) AS m FROM resource").first?.column("m")?.integer ?? 0
        }
        var condition: String
        var binds: [SQLiteData]
        if patient.id.isEmpty {
            condition = "r.deleted = 0 AND r.rid <= ? AND (r.type = ? OR r.rid IN (SELECT rid FROM idx_reference WHERE target_type = ?))"
            binds = [.integer(snapshot), .text(patient.type), .text(patient.type)]
        } else {
            condition = "r.deleted = 0 AND r.rid <= ? AND r.rid IN (SELECT rid FROM idx_reference WHERE target_id = ? AND target_type = ?"
                + " UNION ALL SELECT rid FROM resource WHERE type = ? AND id = ?)"
            binds = [.integer(snapshot), .text(patient.id), .text(patient.type), .text(patient.type), .text(patient.id)]
        }
        if let types, !types.isEmpty {
            condition += " AND r.type IN (" + Array(repeating: "?", count: types.count).joined(separator: ",") + ")"
            binds.append(contentsOf: types.map { .text($0) })
        }
        if let since {
            condition += " AND r.last_updated >= ?"
            binds.append(.integer(Int(since)))
        }
        var pageCondition = condition
        var pageBinds = binds
        if let after = page.after {
            pageCondition += " AND r.rid > ?"
            pageBinds.append(.integer(after))
        }
        let rows = try await db.query(
            "SELECT r.rid, \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE " + pageCondition
                + " ORDER BY r.rid LIMIT ?", pageBinds + [.integer(page.count + 1)])
        var records: [ResourceRecord] = []
        var lastRid = page.after ?? 0
        for row in rows.prefix(page.count) {
            lastRid = row.columns[0].data.integer ?? lastRid
            if let record = Self.record(Array(row.columns.dropFirst())) { records.append(record) }
        }
        var total: Int?
        if page.withTotal {
            total = try await db.query("SELECT COUNT(*) AS n FROM resource r WHERE " + condition, binds).first?.column("n")?.integer
        }
        let next = rows.count > page.count
            ? PageRequest(count: page.count, after: lastRid, snapshot: snapshot, withTotal: page.withTotal) : nil
        return SearchPage(records: records, total: total, next: next)
    }

    public func include(from sources: [ResourceKey], parameter: String?, targetType: String?) async throws -> [ResourceRecord] {
        guard !sources.isEmpty else { return [] }
        var result: [ResourceRecord] = []
        for chunk in sources.chunked(400) {
            var sql = "SELECT DISTINCT \(Self.recordColumns) FROM idx_reference i"
                + " JOIN resource r ON r.type = i.target_type AND r.id = i.target_id JOIN resource_history h ON h.hid = r.hid"
                + " WHERE r.deleted = 0 AND i.rid IN (SELECT rid FROM resource WHERE "
                + Array(repeating: "(type = ? AND id = ?)", count: chunk.count).joined(separator: " OR ") + ")"
            var binds = chunk.flatMap { [SQLiteData.text($0.type), .text($0.id)] }
            if let parameter { sql += " AND i.param = ?"; binds.append(.text(parameter)) }
            if let targetType { sql += " AND i.target_type = ?"; binds.append(.text(targetType)) }
            result.append(contentsOf: try await reader.query(sql, binds).compactMap { Self.record($0.columns) })
        }
        return result
    }

    public func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?) async throws -> [ResourceRecord] {
        guard !targets.isEmpty else { return [] }
        var result: [ResourceRecord] = []
        for chunk in targets.chunked(400) {
            var sql = "SELECT DISTINCT \(Self.recordColumns) FROM idx_reference i"
                + " JOIN resource r ON r.rid = i.rid JOIN resource_history h ON h.hid = r.hid"
                + " WHERE r.deleted = 0 AND i.type = ? AND ("
                + Array(repeating: "(i.target_id = ? AND i.target_type = ?)", count: chunk.count).joined(separator: " OR ") + ")"
            var binds: [SQLiteData] = [.text(sourceType)] + chunk.flatMap { [SQLiteData.text($0.id), .text($0.type)] }
            if let parameter { sql += " AND i.param = ?"; binds.append(.text(parameter)) }
            result.append(contentsOf: try await reader.query(sql, binds).compactMap { Self.record($0.columns) })
        }
        return result
    }

    public func commit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        try await writer.submit(unit)
    }

    public func resourceCounts() async throws -> [String: Int] {
        let rows = try await reader.query("SELECT type, COUNT(*) AS n FROM resource WHERE deleted = 0 GROUP BY type")
        var result: [String: Int] = [:]
        for row in rows {
            if let t = row.column("type")?.string, let n = row.column("n")?.integer { result[t] = n }
        }
        return result
    }

    /// Rebuilds the search index of every current resource (of `type`, when given) from the
    /// stored content, in batches; `progress` gets (done, total) after each batch.
    public func reindex(type: String?, extract: @Sendable (JSONObject, String) -> [IndexEntry],
                        progress: @Sendable (Int, Int) -> Void) async throws -> Int {
        let filter = type == nil ? "" : " AND r.type = ?"
        let typeBind: [SQLiteData] = type.map { [.text($0)] } ?? []
        let total = try await reader.query("SELECT COUNT(*) AS n FROM resource r WHERE r.deleted = 0" + filter, typeBind)
            .first?.column("n")?.integer ?? 0
        var after = 0
        var done = 0
        while true {
            let rows = try await reader.query(
                "SELECT r.rid, r.type, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid"
                    + " WHERE r.deleted = 0 AND r.rid > ?" + filter + " ORDER BY r.rid LIMIT 1000",
                [.integer(after)] + typeBind)
            if rows.isEmpty { break }
            var index: [Int: (type: String, entries: [IndexEntry])] = [:]
            for row in rows {
                let c = row.columns
                guard let rid = c[0].data.integer, let t = c[1].data.string, let content = c[2].data.blob else { continue }
                after = rid
                guard case .object(let o)? = try? JSONParser.parse(content.readableBytesView) else { continue }
                index[rid] = (t, extract(o, t))
            }
            try await writer.replaceIndex(index)
            done += rows.count
            progress(done, total)
        }
        return done
    }

    /// Refreshes the query planner's statistics; worth it after bulk loads.
    public func analyze() async throws {
        try await writer.analyze()
    }

    public func close() async throws {
        try? await writer.analyze(full: false)
        try await writer.close()
        pointReader.close()
        for r in readers { try await r.close() }
    }
}
