import FHIRModel
import Logging
import NIOCore
import PostgresNIO
@_spi(WritePipeline) import Store
import Synchronization

/// The production store: PostgreSQL through a pooled `PostgresClient`, safe for several
/// `huitong` nodes on one database (ADR 007). Searches, history and includes can go to a read
/// replica; reads by id, conditional searches and everything inside a write go to the primary,
/// so a client that writes and then reads or updates with `If-Match` sees its own write.
public final class PostgresStore: ResourceStore {
    let primary: PostgresClient
    let replica: PostgresClient?
    private let runner: Task<Void, Never>
    let logger: Logger
    let writer: PostgresWriter
    public let changeSignal = ChangeSignal()
    public let documentStreams: any DocumentStreams
    /// Reads that must see the latest commit.
    let current: SQLReadQueries
    /// Reads that may lag a little (the replica when there is one).
    let reads: SQLReadQueries
    /// Rows this node has written, and when it next refreshes the planner's statistics.
    private let growth = Mutex<(written: Int, next: Int, running: Bool)>((0, 1_000, false))

    /// Connects, applies pending migrations (serialized across nodes) and returns the store.
    /// - Parameters:
    ///   - url: `postgres://user:password@host:port/database`
    ///   - readURL: an optional streaming replica for searches.
    ///   - searchPath: a schema to use instead of `public` (tests give each run its own).
    ///   - createSchema: create the `searchPath` schema first.
    public static func open(url: String, readURL: String? = nil, searchPath: String? = nil, createSchema: Bool = false,
                            maxConnections: Int = 20, logger: Logger = Logger(label: "huitong.store")) async throws -> PostgresStore {
        func client(_ url: String) throws -> PostgresClient {
            var configuration = try PostgresURL.configuration(url)
            configuration.options.maximumConnections = maxConnections
            if let searchPath { configuration.options.additionalStartupParameters = [("search_path", searchPath)] }
            return PostgresClient(configuration: configuration, backgroundLogger: logger)
        }
        let primary = try client(url)
        let replica = try readURL.map(client)
        let runner = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { await primary.run() }
                if let replica { group.addTask { await replica.run() } }
            }
        }
        let store = PostgresStore(primary: primary, replica: replica, runner: runner, logger: logger)
        do {
            if createSchema, let searchPath {
                _ = try await store.current.db.query("CREATE SCHEMA IF NOT EXISTS " + PostgresSQL.identifier(searchPath), [])
            }
            try await store.migrate()
        } catch {
            runner.cancel()
            throw StoreError.storage("PostgreSQL at \(PostgresURL.redacted(url)): \(PostgresSQL.describe(error))")
        }
        return store
    }

    init(primary: PostgresClient, replica: PostgresClient?, runner: Task<Void, Never>, logger: Logger) {
        self.primary = primary
        self.replica = replica
        self.runner = runner
        self.logger = logger
        self.writer = PostgresWriter(client: primary, logger: logger)
        self.documentStreams = PostgresDocumentStreams(client: primary, logger: logger)
        self.current = SQLReadQueries(PostgresExecutor(target: .pool(primary), logger: logger))
        self.reads = replica.map { SQLReadQueries(PostgresExecutor(target: .pool($0), logger: logger)) } ?? current
    }

    /// Applies pending migrations under a session advisory lock, so nodes starting together
    /// migrate once. Returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] {
        try await primary.withConnection { connection in
            let tx = PostgresExecutor(target: .connection(connection), logger: logger)
            // A session lock on this connection: released before the connection goes back to the pool.
            _ = try await tx.query("SELECT pg_advisory_lock(7248001)", [])
            do {
                let done = try await applyMigrations(tx)
                _ = try await tx.query("SELECT pg_advisory_unlock(7248001)", [])
                return done
            } catch {
                _ = try? await tx.query("ROLLBACK", [])
                _ = try? await tx.query("SELECT pg_advisory_unlock(7248001)", [])
                throw error
            }
        }
    }

    private func applyMigrations(_ tx: PostgresExecutor) async throws -> [Int] {
        _ = try await tx.query("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                               + " applied_at timestamptz NOT NULL DEFAULT now())", [])
        let applied = Set(try await tx.query("SELECT version FROM schema_migrations", []).compactMap { $0[0].integer })
        var done: [Int] = []
        for migration in PostgresMigrations.all where !applied.contains(migration.version) {
            logger.info("Applying PostgreSQL migration \(migration.version): \(migration.name)")
            _ = try await tx.query("BEGIN", [])
            for statement in migration.statements { _ = try await tx.query(statement, []) }
            _ = try await tx.query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                                   [.integer(migration.version), .text(migration.name)])
            _ = try await tx.query("COMMIT", [])
            done.append(migration.version)
        }
        return done
    }

    public func read(_ key: ResourceKey) async throws -> ResourceRecord? {
        // PostgreSQL text cannot hold a NUL, so no stored key has one (and binding it is an error).
        guard key.isStorable else { return nil }
        var record: ResourceRecord?
        for try await row in try await primary.execute(ReadCurrent(key: key), logger: logger) { record = ResourceRecord(key, row) }
        return record
    }

    public func read(keys: [ResourceKey]) async throws -> [ResourceKey: ResourceRecord] {
        // Feeds write decisions (the master index's candidates): the primary, one query per 200.
        try await current.records(keys: keys)
    }

    public func vread(_ key: ResourceKey, version: Int) async throws -> ResourceRecord? {
        var record: ResourceRecord?
        for try await row in try await primary.execute(ReadVersion(key: key, version: version), logger: logger) {
            record = ResourceRecord(key, row)
        }
        return record
    }

    public func history(_ query: HistoryQuery) async throws -> HistoryPage {
        try await reads.history(query)
    }

    public func search(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey] {
        // Conditional interactions decide writes on this answer: the primary.
        try await current.keys(query, limit: limit)
    }

    public func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage {
        try await reads.search(query, page: page)
    }

    public func compartment(of patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest,
                            scope: ReadScope) async throws -> SearchPage {
        try await reads.compartment(of: patients, types: types, since: since, page: page, scope: scope)
    }

    public func resources(of type: String, withToken parameter: String, codes: [String], limitPerCode: Int) async throws -> TokenLookup {
        // Feeds write decisions (the master index): the primary.
        try await current.resources(of: type, withToken: parameter, codes: codes, limitPerCode: limitPerCode)
    }

    public func keys(ofRecords records: [Int]) async throws -> [Int: ResourceKey] {
        try await current.keys(ofRecords: records)
    }

    public func resources(of type: String, referencing targets: [ResourceKey], parameter: String) async throws -> [ResourceRecord] {
        // Feeds write decisions (the master index): the primary.
        try await current.resources(of: type, referencing: targets, parameter: parameter)
    }

    public func include(from sources: [ResourceKey], parameter: String?, targetType: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        try await reads.include(from: sources, parameter: parameter, targetType: targetType, scope: scope)
    }

    public func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        try await reads.revinclude(of: targets, sourceType: sourceType, parameter: parameter, scope: scope)
    }

    public func readable(_ keys: [ResourceKey], scope: ReadScope) async throws -> Set<ResourceKey> {
        try await current.readable(keys, scope: scope)
    }

    public func decide(_ subject: AccessSubject, scope: ReadScope) async throws -> Bool {
        try await current.decide(subject, scope: scope)
    }

    @_spi(WritePipeline) public func commit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        let outcomes = try await writer.commit(unit)
        wrote(unit.writes.reduce(0) { $0 + 1 + $1.index.count })
        if !unit.writes.isEmpty { changeSignal.fire() }
        return outcomes
    }

    /// The channel commits with resource writes notify (`pg_notify` in their transaction).
    static let changesChannel = "huitong_changes"

    /// Listens on one connection of the pool for other nodes' commits until cancelled.
    public func watchChanges() async throws {
        try await primary.withConnection { connection in
            try await connection.listen(on: Self.changesChannel) { notifications in
                for try await _ in notifications { self.changeSignal.fire() }
            }
        }
    }

    /// The tables whose statistics decide the plans of searches and conditional writes.
    static let plannedTables = ["resource", "resource_history", "idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri",
                                "idx_quantity", "idx_concept", "idx_closure", "audit_patient"]

    /// Analyses the tables in the background each time this node's written rows double (from
    /// 1,000). A fresh database has no statistics, and autovacuum analyses at most once a minute:
    /// until then a search's plan can walk every Patient per query. A blocking-key assumption
    /// took 80–130 ms instead of 0.1 ms with 500 Patients (ADR 015).
    private func wrote(_ rows: Int) {
        let start = growth.withLock { g -> Bool in
            g.written += rows
            guard g.written >= g.next, !g.running else { return false }
            (g.next, g.running) = (g.written * 2, true)
            return true
        }
        guard start else { return }
        Task {
            defer { growth.withLock { $0.running = false } }
            do {
                _ = try await current.db.query("ANALYZE " + Self.plannedTables.joined(separator: ", "), [])
            } catch {
                logger.warning("ANALYZE after growth failed: \(PostgresSQL.describe(error))")
            }
        }
    }

    /// Any number of nodes may write the same database.
    public var hasOtherWriters: Bool { true }

    public func record(kind: String, id: String, now: Int64) async throws -> PlatformRecord? {
        guard !kind.utf8.contains(0), !id.utf8.contains(0) else { return nil }
        return try await current.record(kind: kind, id: id, now: now)
    }

    public func records(kind: String, now: Int64) async throws -> [PlatformRecord] {
        try await current.records(kind: kind, now: now)
    }

    public func records(kind: String, after: String, limit: Int, now: Int64) async throws -> [PlatformRecord] {
        try await current.records(kind: kind, after: after, limit: limit, now: now)
    }

    public func auditEvents(patients: [String], before: Int?, limit: Int) async throws -> [StoredAuditEvent] {
        try await current.auditEvents(patients: patients, before: before, limit: limit)
    }

    public func auditEvent(seq: Int) async throws -> StoredAuditEvent? {
        try await current.auditEvent(seq: seq)
    }

    public func verifyAuditChain(progress: @Sendable (Int) -> Void) async throws -> AuditChainReport {
        try await current.verifyAuditChain(progress: progress)
    }

    public func auditAnchor() async throws -> (seq: Int, hash: String) {
        try await current.auditAnchor()
    }

    public func auditEvents(after seq: Int, limit: Int) async throws -> [StoredAuditEvent] {
        try await current.auditEvents(after: seq, limit: limit)
    }

    public func auditArchiveCut(before: Int64) async throws -> Int {
        try await current.auditArchiveCut(before: before)
    }

    public func pruneAudit(through seq: Int, hash: String, archive: String) async throws {
        try await primary.transaction(logger: logger) { connection in
            let tx = PostgresExecutor(target: .connection(connection), logger: logger)
            guard try await tx.query("SELECT hash FROM audit_event WHERE seq = ? FOR UPDATE", [.integer(seq)]).first?.first?.text == hash else {
                throw StoreError.conditionChanged
            }
            let now = Int64(clock_realtime_micros())
            for (sql, binds) in zip(AuditChain.pruneSQL, AuditChain.pruneBinds(seq: seq, hash: hash, archive: archive, now: now)) {
                _ = try await tx.query(sql, binds)
            }
        }
    }

    public func concepts(system: String, version: String?, _ query: ConceptQuery, after: String?, limit: Int) async throws -> [ConceptEntry] {
        try await current.concepts(system: system, version: version, query, after: after, limit: limit)
    }

    public func codeCounts(facility: String, systems: [String], limit: Int) async throws -> [CodeCount] {
        try await reads.codeCounts(facility: facility, systems: systems, limit: limit)
    }

    public func resourceCounts() async throws -> [String: Int] {
        try await current.resourceCounts()
    }

    /// The feed is the history table in transaction order. A row is handed out only once every
    /// transaction that could still commit before it has ended (its transaction id is below the
    /// oldest one running), so a slow transaction never lets a consumer skip past its rows. The
    /// consumer's row is locked (`SKIP LOCKED`) for the call: one node serves a consumer at a time.
    public func consumeChanges(consumer: String, limit: Int,
                               _ handle: @Sendable ([ResourceChange]) async throws -> Void) async throws -> Int {
        try await primary.transaction(logger: logger) { connection in
            let tx = PostgresExecutor(target: .connection(connection), logger: logger)
            _ = try await tx.query("INSERT INTO change_consumer (name, txid, hid) VALUES (?, '0'::xid8, 0) ON CONFLICT DO NOTHING",
                                   [.text(consumer)])
            guard let position = try await tx.query(
                "SELECT txid::text, hid FROM change_consumer WHERE name = ? FOR UPDATE SKIP LOCKED", [.text(consumer)]).first,
                let txid = position[0].text, let hid = position[1].integer else { return 0 }
            let rows = try await tx.query(
                "SELECT h.txid::text, r.type, r.id, h.version, h.last_updated, h.content IS NULL, h.hid"
                    + " FROM resource_history h JOIN resource r ON r.rid = h.rid"
                    + " WHERE (h.txid, h.hid) > (?::xid8, ?) AND h.txid < pg_snapshot_xmin(pg_current_snapshot())"
                    + " ORDER BY h.txid, h.hid LIMIT ?", [.text(txid), .integer(hid), .integer(limit)])
            guard let last = rows.last, let lastTxid = last[0].text, let lastHid = last[6].integer else { return 0 }
            try await handle(rows.compactMap(SQLReadQueries.change))
            _ = try await tx.query("UPDATE change_consumer SET txid = ?::xid8, hid = ?, updated_at = now() WHERE name = ?",
                                   [.text(lastTxid), .integer(lastHid), .text(consumer)])
            return rows.count
        }
    }

    public func reindex(type: String?, extract: @Sendable (JSONObject, String) -> [IndexEntry],
                        progress: @Sendable (Int, Int) -> Void) async throws -> Int {
        try await current.reindex(type: type, extract: extract, replace: { index in
            try await primary.transaction(logger: logger) { connection in
                try await PostgresRows.replaceIndex(index, clearing: Array(index.keys), on: connection, logger: logger)
            }
        }, progress: progress)
    }

    public func schemaVersion() async throws -> Int {
        try await current.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    }

    /// A database URL with its password hidden, for logs.
    public static func redacted(_ url: String) -> String {
        PostgresURL.redacted(url)
    }

    public func analyze() async throws {
        _ = try await current.db.query("ANALYZE", [])
    }

    /// When `table` was last analysed by an explicit `ANALYZE` (nil: never), for tests.
    package func lastAnalysed(_ table: String) async throws -> String? {
        try await current.db.query("SELECT last_analyze::text FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ?",
                                   [.text(table)]).first?.first?.text
    }

    /// Drops a schema and everything in it (test stores).
    package static func dropSchema(url: String, _ name: String) async throws {
        try await execute(url: url, "DROP SCHEMA IF EXISTS " + PostgresSQL.identifier(name) + " CASCADE")
    }

    /// Runs one statement on its own short-lived connection (tests and tools).
    package static func execute(url: String, _ sql: String) async throws {
        let client = PostgresClient(configuration: try PostgresURL.configuration(url), backgroundLogger: Logger(label: "huitong.tool"))
        let runner = Task { await client.run() }
        defer { runner.cancel() }
        try await client.query(PostgresQuery(unsafeSQL: sql))
    }

    public func close() async throws {
        runner.cancel()
        await runner.value
    }
}
