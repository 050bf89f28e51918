import FHIRModel
import Logging
import NIOCore
import NIOPosix
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

    let readers: SQLiteReaders
    let pointReader: SQLitePointReader
    let writer: SQLiteWriter
    let logger: Logger
    /// Change-feed consumers being served now.
    private let consumers = Mutex<Set<String>>([])
    public let changeSignal = ChangeSignal()

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// - Parameter documentDiskReserve: free bytes on the store's disk that document streams never
    ///   take (`FileDocumentStreams`).
    public static func open(path: String, durability: Durability = .normal, readers readerCount: Int = 4, documentDiskReserve: Int = 0,
                            logger: Logger = Logger(label: "huitong.store")) async throws -> SQLiteStore {
        try await open(path: path, durability: durability, readers: readerCount, spool: AuditSpool.Tuning(),
                       documentDiskReserve: documentDiskReserve, logger: logger)
    }

    static func open(path: String, durability: Durability = .normal, readers readerCount: Int = 4, spool tuning: AuditSpool.Tuning,
                     documentDiskReserve: Int = 0, logger: Logger = Logger(label: "huitong.store")) async throws -> SQLiteStore {
        // The writer's connection: settings, migrations, then group commit (SQLiteWriter).
        let writeConnection = try SQLiteRawConnection(path: path)
        let contentFiles = ContentFiles(folder: path + "-content", durable: durability == .full)
        writeConnection.contentFiles = contentFiles
        do {
            try writeConnection.exec("PRAGMA journal_mode = WAL")
            try writeConnection.exec("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // 256 MB of page cache: the writer's pages stay valid across its commits, and the master
            // index reads its index pages here too (`linkageRows`).
            try writeConnection.exec("PRAGMA cache_size = -262144")
            try writeConnection.exec("PRAGMA temp_store = MEMORY")
            // Checkpoints run inside the commit that crosses 16,000 WAL pages (64 MB), not 1,000
            // (SQLite's default): a checkpoint's cost is mostly its fsync, barely more for 16x the
            // pages (hot index pages are copied once, not at every checkpoint), so one create in
            // several hundred pays it instead of one in twenty (ADR 003).
            try writeConnection.exec("PRAGMA wal_autocheckpoint = 16000")
            // The WAL file is cut back to 128 MB when it restarts after a checkpoint.
            try writeConnection.exec("PRAGMA journal_size_limit = 134217728")
            try migrate(writeConnection, logger: logger)
            // Keep the planner's statistics current (cheap when nothing changed much).
            try writeConnection.exec("PRAGMA optimize = 0x10002")
            try dropTinyStatistics(writeConnection)
        } catch {
            writeConnection.close()
            throw error
        }
        let readers = try SQLiteReaders(path: path, connections: max(2, readerCount), contentFiles: contentFiles)
        let writer = try SQLiteWriter(connection: writeConnection, logger: logger)
        let pointReader = try SQLitePointReader(path: path, connections: max(2, readerCount), contentFiles: contentFiles)
        let reads = SQLReadQueries(readers)
        let moved = Int(try await reads.record(kind: AuditSpool.marker.kind, id: AuditSpool.marker.id, now: 0)?.content ?? "") ?? 0
        let spool = try await AuditSpool.open(folder: path + "-audit-spool", fsync: durability == .full, writer: writer,
                                              movedSegment: moved, tuning: tuning, logger: logger)
        return SQLiteStore(readers: readers, pointReader: pointReader, writer: writer, spool: spool,
                           documentStreams: FileDocumentStreams(contentFolder: contentFiles.folder, durable: durability == .full, marks: writer,
                                                                reserve: documentDiskReserve),
                           logger: logger)
    }

    init(readers: SQLiteReaders, pointReader: SQLitePointReader, writer: SQLiteWriter, spool: AuditSpool,
         documentStreams: FileDocumentStreams, logger: Logger) {
        self.documentStreams = documentStreams
        self.readers = readers
        self.reads = SQLReadQueries(readers)
        self.pointReader = pointReader
        self.writer = writer
        self.spool = spool
        self.logger = logger
    }

    /// Audit events of reads on their way into the chain (see `AuditSpool`).
    let spool: AuditSpool
    public let documentStreams: any DocumentStreams

    /// Statistics gathered while the store held a handful of resources (`PRAGMA optimize` when a
    /// first few were loaded) make the planner scan tables that then grow by orders of magnitude
    /// before the next analysis: after loading one ConceptMap and restarting, an import read its
    /// resources at 600/s instead of 10,000/s (every point read scanned the store). Below this
    /// many resources the statistics are dropped and the planner's defaults (which assume large
    /// tables and so use the indexes) apply.
    static let minimumAnalysedResources = 10_000

    static func dropTinyStatistics(_ db: SQLiteRawConnection) throws {
        guard !(try db.query("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'", [])).isEmpty else { return }
        let stat = try db.query("SELECT stat FROM sqlite_stat1 WHERE tbl = 'resource' AND idx = 'resource_key'", []).first?.first?.text
        let analysed = stat.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        guard analysed < minimumAnalysedResources else { return }
        try db.exec("DELETE FROM sqlite_stat1")
        try db.exec("ANALYZE sqlite_schema")
    }

    static func migrate(_ db: SQLiteRawConnection, logger: Logger) throws {
        try db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        let applied = Set(try db.query("SELECT version FROM schema_migrations", []).compactMap { $0.first?.integer })
        for migration in SQLiteMigrations.all where !applied.contains(migration.version) {
            logger.info("Applying migration \(migration.version): \(migration.name)")
            try db.exec("BEGIN IMMEDIATE")
            do {
                for statement in migration.statements { try db.exec(statement) }
                try db.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, datetime('now'))",
                           [.integer(migration.version), .text(migration.name)])
                try db.exec("COMMIT")
            } catch {
                try? db.exec("ROLLBACK")
                throw error
            }
        }
    }

    /// The shared read queries over the reader connections (used round-robin).
    package let reads: SQLReadQueries

    public func read(_ key: ResourceKey) async throws -> ResourceRecord? {
        try pointReader.read(key)
    }

    public func vread(_ key: ResourceKey, version: Int) async throws -> ResourceRecord? {
        try pointReader.vread(key, version: version)
    }

    public func history(_ query: HistoryQuery) async throws -> HistoryPage {
        try await reads.history(query)
    }

    public func search(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey] {
        guard query.isPointLookup, limit <= 16 else { return try await reads.keys(query, limit: limit) }
        // A conditional interaction's search (`identifier=system|value`): an indexed lookup of a
        // few rows, on the calling thread with its statement prepared once (ADR 004).
        return try ConditionalMatchSQL(.sqlite, query, limit: limit).keys { sql, bindings in try pointReader.rows(sql, bindings) }
    }

    public func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage {
        try await reads.search(query, page: page)
    }

    public func compartment(of patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest,
                            scope: ReadScope) async throws -> SearchPage {
        try await reads.compartment(of: patients, types: types, since: since, page: page, scope: scope)
    }

    // The master index's lookups run on every Patient write: one prepared statement per code or
    // target, on the calling thread (a few microseconds each) rather than a thread-pool round trip
    // per query; on the writer's connection when it is idle (its page cache is warm, see
    // `SQLiteWriter.rowsIfIdle`), else on the point reader's.

    func linkageRows(_ sql: String, _ bindings: [[SQLValue]]) throws -> [[[SQLValue]]] {
        // A few dozen lookups at a time, so that a big unit's plan (a bulk transaction's thousands
        // of candidates) never keeps the writer from its next batch for long.
        var rows: [[[SQLValue]]] = []
        rows.reserveCapacity(bindings.count)
        for start in stride(from: 0, to: bindings.count, by: 64) {
            let chunk = Array(bindings[start..<min(start + 64, bindings.count)])
            rows += try writer.rowsIfIdle(sql, chunk) ?? pointReader.rows(sql, chunk)
        }
        return rows
    }

    public func read(keys: [ResourceKey]) async throws -> [ResourceKey: ResourceRecord] {
        let keys = Array(Set(keys)).filter(\.isStorable)
        let sql = "SELECT \(SQLReadQueries.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid"
            + " WHERE r.type = ? AND r.id = ?"
        var found: [ResourceKey: ResourceRecord] = [:]
        for rows in try linkageRows(sql, keys.map { [.text($0.type), .text($0.id)] }) {
            if let row = rows.first, let record = SQLReadQueries.record(row) { found[record.key] = record }
        }
        return found
    }

    public func resources(of type: String, withToken parameter: String, codes: [String], limitPerCode: Int) async throws -> TokenLookup {
        let codes = Array(Set(codes))
        // From the index alone (idx_token_lookup covers rid).
        let sql = "SELECT rid FROM idx_token WHERE type = ? AND param = ? AND code = ? LIMIT ?"
        let found = try linkageRows(sql, codes.map { [.text(type), .text(parameter), .text($0), .integer(limitPerCode + 1)] })
        var result = TokenLookup()
        for (code, rows) in zip(codes, found) where !rows.isEmpty {
            if rows.count > limitPerCode { result.overLimit.insert(code); continue }
            result.matches[code] = rows.compactMap { $0[0].integer }
        }
        return result
    }

    public func keys(ofRecords records: [Int]) async throws -> [Int: ResourceKey] {
        let rids = Array(Set(records))
        let found = try linkageRows("SELECT type, id FROM resource WHERE rid = ? AND deleted = 0", rids.map { [.integer($0)] })
        var result: [Int: ResourceKey] = [:]
        for (rid, rows) in zip(rids, found) {
            if let row = rows.first, let t = row[0].text, let id = row[1].text { result[rid] = ResourceKey(t, id) }
        }
        return result
    }

    public func resources(of type: String, referencing targets: [ResourceKey], parameter: String) async throws -> [ResourceRecord] {
        let sql = "SELECT \(SQLReadQueries.recordColumns) FROM idx_reference i JOIN resource r ON r.rid = i.rid"
            + " JOIN resource_history h ON h.hid = r.hid"
            + " WHERE i.target_id = ? AND i.target_type = ? AND i.param = ? AND i.type = ? AND r.deleted = 0"
        var seen = Set<ResourceKey>()
        return try linkageRows(sql, targets.map { [.text($0.id), .text($0.type), .text(parameter), .text(type)] })
            .joined().compactMap { row in SQLReadQueries.record(row).flatMap { seen.insert($0.key).inserted ? $0 : nil } }
    }

    public func include(from sources: [ResourceKey], parameter: String?, targetType: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        try await reads.include(from: sources, parameter: parameter, targetType: targetType, scope: scope)
    }

    public func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        try await reads.revinclude(of: targets, sourceType: sourceType, parameter: parameter, scope: scope)
    }

    public func readable(_ keys: [ResourceKey], scope: ReadScope) async throws -> Set<ResourceKey> {
        try await reads.readable(keys, scope: scope)
    }

    public func decide(_ subject: AccessSubject, scope: ReadScope) async throws -> Bool {
        try await reads.decide(subject, scope: scope)
    }

    @_spi(WritePipeline) public func commit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        // A read's audit event: durable in the spool now, in the chain within milliseconds.
        if unit.writes.isEmpty && unit.records.isEmpty && unit.consumerPosition == nil && !unit.audit.isEmpty {
            try spool.append(unit.audit)
            return []
        }
        let outcomes = try await writer.submit(unit)
        if !unit.writes.isEmpty { changeSignal.fire() }
        return outcomes
    }

    /// One process owns the file (the data-folder lock).
    public var hasOtherWriters: Bool { false }

    /// On the point reader (no thread-pool round trip): looked up on hot paths (a card's state
    /// on every scan, an OAuth client, an HL7 message's control id).
    public func record(kind: String, id: String, now: Int64) async throws -> PlatformRecord? {
        try pointReader.rows(PlatformRecordSQL.selectOne, [[.text(kind), .text(id), .integer(Int(now))]]).first?.first.flatMap(PlatformRecordSQL.record)
    }

    public func records(kind: String, now: Int64) async throws -> [PlatformRecord] {
        try await reads.records(kind: kind, now: now)
    }

    public func records(kind: String, after: String, limit: Int, now: Int64) async throws -> [PlatformRecord] {
        try await reads.records(kind: kind, after: after, limit: limit, now: now)
    }

    public func auditEvents(patients: [String], before: Int?, limit: Int) async throws -> [StoredAuditEvent] {
        try await spool.flush()
        return try await reads.auditEvents(patients: patients, before: before, limit: limit)
    }

    public func auditEvent(seq: Int) async throws -> StoredAuditEvent? {
        try await spool.flush()
        return try await reads.auditEvent(seq: seq)
    }

    public func verifyAuditChain(progress: @Sendable (Int) -> Void) async throws -> AuditChainReport {
        try await spool.flush()
        return try await reads.verifyAuditChain(progress: progress)
    }

    public func auditAnchor() async throws -> (seq: Int, hash: String) {
        try await reads.auditAnchor()
    }

    public func auditEvents(after seq: Int, limit: Int) async throws -> [StoredAuditEvent] {
        try await spool.flush()
        return try await reads.auditEvents(after: seq, limit: limit)
    }

    public func auditArchiveCut(before: Int64) async throws -> Int {
        try await spool.flush()
        return try await reads.auditArchiveCut(before: before)
    }

    public func pruneAudit(through seq: Int, hash: String, archive: String) async throws {
        try await spool.flush()
        try await writer.pruneAudit(through: seq, hash: hash, archive: archive, now: Int64(clock_realtime_micros()))
    }

    public func concepts(system: String, version: String?, _ query: ConceptQuery, after: String?, limit: Int) async throws -> [ConceptEntry] {
        try await reads.concepts(system: system, version: version, query, after: after, limit: limit)
    }

    public func codeCounts(facility: String, systems: [String], limit: Int) async throws -> [CodeCount] {
        try await reads.codeCounts(facility: facility, systems: systems, limit: limit)
    }

    public func resourceCounts() async throws -> [String: Int] {
        try await reads.resourceCounts()
    }

    public func reindex(type: String?, extract: @Sendable (JSONObject, String) -> [IndexEntry],
                        progress: @Sendable (Int, Int) -> Void) async throws -> Int {
        try await reads.reindex(type: type, extract: extract, replace: { try await writer.replaceIndex($0) }, progress: progress)
    }

    public func consumeChanges(consumer: String, limit: Int,
                               _ handle: @Sendable ([ResourceChange]) async throws -> Void) async throws -> Int {
        // One process owns the file (data-folder lock), so an in-process claim is exclusive.
        guard consumers.withLock({ $0.insert(consumer).inserted }) else { return 0 }
        defer { _ = consumers.withLock { $0.remove(consumer) } }
        let position = try await reads.scalar("SELECT COALESCE(MAX(position), 0) FROM change_consumer WHERE name = ?", [.text(consumer)])
        let rows = try await reads.db.query(
            "SELECT h.hid, r.type, r.id, h.version, h.last_updated, h.content IS NULL FROM resource_history h"
                + " JOIN resource r ON r.rid = h.rid WHERE h.hid > ? ORDER BY h.hid LIMIT ?", [.integer(position), .integer(limit)])
        guard let last = rows.last?[0].integer else { return 0 }
        try await handle(rows.compactMap(SQLReadQueries.change))
        var unit = WriteUnit(writes: [])
        unit.consumerPosition = (consumer, last)
        _ = try await writer.submit(unit)
        return rows.count
    }

    public func schemaVersion() async throws -> Int {
        try await reads.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    }

    /// Nobody else writes the file: every commit is this process's and fires the signal itself.
    public func watchChanges() async throws {}

    public func analyze() async throws {
        try await writer.analyze()
    }

    public func close() async throws {
        try await spool.close()
        try? await writer.analyze(full: false)
        try await writer.close()
        pointReader.close()
        try await readers.close()
    }
}
