import FHIRModel
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The single writer of the SQLite store. Units queue up while a commit is in flight and
/// the next commit takes all of them (group commit), so many concurrent writers share
/// one fsync. Each unit stays atomic: its preconditions are checked under the writer's
/// lock, and a unit that fails is left out without affecting the others in the batch.
/// A batch runs start to end on the writer's own thread, through the C API with prepared
/// statements (`SQLiteWriteSession`): one thread hop per batch, not one per statement.
actor SQLiteWriter {
    private let session: SQLiteWriteSession
    private let thread = NIOThreadPool(numberOfThreads: 1)
    private let logger: Logger
    private var queue: [(unit: PreparedUnit, continuation: CheckedContinuation<[WriteOutcome], any Error>)] = []
    private var draining = false
    private var closed = false

    static let maxBatchUnits = 256

    init(connection: SQLiteRawConnection, logger: Logger) throws {
        session = try SQLiteWriteSession(db: connection)
        self.logger = logger
        thread.start()
    }

    func submit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        guard !closed else { throw StoreError.storage("The store is closed") }
        // The assumptions' SQL is made here, not on the writer's thread (the one that everything waits for).
        let unit = PreparedUnit(unit)
        return try await withCheckedThrowingContinuation { continuation in
            queue.append((unit, continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    func close() async throws {
        closed = true
        while draining { await Task.yield() }
        let session = self.session
        try await thread.runIfActive { session.gate.withLock { open in open = false; session.db.close() } }
        try await thread.shutdownGracefully()
    }

    private func drain() async {
        while !queue.isEmpty {
            let n = min(queue.count, Self.maxBatchUnits)
            let batch = Array(queue.prefix(n))
            queue.removeFirst(n)
            do {
                let results = try await onThread { try $0.commitBatch(batch.map(\.unit)) }
                for (item, result) in zip(batch, results) { item.continuation.resume(with: result) }
            } catch {
                // The batch as a whole failed (an engine error, not a precondition): retry the
                // units one by one so one bad unit cannot fail its neighbours.
                if batch.count == 1 {
                    batch[0].continuation.resume(throwing: StoreError.storage("\(error)"))
                    continue
                }
                logger.warning("Group commit failed, retrying units singly: \(error)")
                for item in batch {
                    do {
                        let results = try await onThread { try $0.commitBatch([item.unit]) }
                        item.continuation.resume(with: results[0])
                    } catch {
                        item.continuation.resume(throwing: StoreError.storage("\(error)"))
                    }
                }
            }
        }
        draining = false
    }

    /// Runs `body` with the session on the writer's thread (batches never overlap: `drain` awaits each).
    private func onThread<T: Sendable>(_ body: @escaping @Sendable (SQLiteWriteSession) throws -> T) async throws -> T {
        let session = self.session
        return try await thread.runIfActive { try session.gate.withLock { _ in try body(session) } }
    }

    /// Runs short indexed queries on the writer's connection, on the calling thread, when no batch
    /// is being written (nil otherwise: the caller reads elsewhere rather than wait for a commit).
    /// The writer's page cache stays warm across its own commits, whereas a reader connection's
    /// cache is dropped whenever another connection has committed: the master index's lookups,
    /// which follow every Patient commit, find their index pages here instead of reading them again.
    nonisolated func rowsIfIdle(_ sql: String, _ bindings: [[SQLValue]]) throws -> [[[SQLValue]]]? {
        let session = self.session
        return try session.gate.withLockIfAvailable { open -> [[[SQLValue]]]? in
            guard open else { return nil }
            return try bindings.map { try session.db.query(sql, $0) }
        } ?? nil
    }

    /// Replaces the index rows of the given resources in one transaction (`huitong reindex`).
    func replaceIndex(_ index: [Int: (type: String, entries: [IndexEntry])]) async throws {
        try await onThread { try $0.replaceIndex(index) }
    }

    /// Document streams' pending marks (`StreamMarks`): on the writer's thread, between batches,
    /// so a commit that settles a stream and a sweep that removes it never interleave.
    func mark(_ id: String, at time: Int) async throws {
        try await onThread { _ = try $0.db.query("INSERT INTO document_stream_pending (id, created) VALUES (?, ?)", [.text(id), .integer(time)]) }
    }

    func marked() async throws -> [(id: String, created: Int)] {
        try await onThread {
            try $0.db.query("SELECT id, created FROM document_stream_pending ORDER BY id", []).compactMap { row in
                guard let id = row[0].text, let created = row[1].integer else { return nil }
                return (id, created)
            }
        }
    }

    func unmark(_ id: String, if condition: @escaping @Sendable (_ created: Int) throws -> Bool) async throws -> Bool {
        try await onThread { session in
            guard let created = try session.db.query("SELECT created FROM document_stream_pending WHERE id = ?", [.text(id)]).first?[0].integer,
                  try condition(created) else { return false }
            _ = try session.db.query("DELETE FROM document_stream_pending WHERE id = ?", [.text(id)])
            return true
        }
    }

    func pruneAudit(through seq: Int, hash: String, archive: String, now: Int64) async throws {
        try await onThread { try $0.pruneAudit(through: seq, hash: hash, archive: archive, now: now) }
    }

    /// `ANALYZE` (full) or `PRAGMA optimize` (only tables whose statistics are stale).
    func analyze(full: Bool = true) async throws {
        try await onThread { try $0.db.exec(full ? "ANALYZE" : "PRAGMA optimize") }
    }

    static let indexTables = SQLiteWriteSession.indexTables
}

/// A unit with its assumptions compiled to SQL.
struct PreparedUnit: Sendable {
    let unit: WriteUnit
    let checks: [(match: ConditionalMatchSQL, expected: Set<ResourceKey>)]

    init(_ unit: WriteUnit) {
        self.unit = unit
        checks = unit.assumptions.map { a in (ConditionalMatchSQL(.sqlite, a.query, limit: max(a.expected.count + 1, 2)), Set(a.expected)) }
    }
}

/// The writer's connection and row counters; used only on the writer's thread, one batch at a time.
final class SQLiteWriteSession: @unchecked Sendable {
    let db: SQLiteRawConnection
    /// Held while the writer's thread uses the connection, or a reader borrows it between batches
    /// (`SQLiteWriter.rowsIfIdle`); false once the connection is closed.
    let gate = Mutex<Bool>(true)
    private var nextRid: Int
    private var nextHid: Int
    private var lastTime: Int64
    /// The audit chain's head after the last append (restored when a batch rolls back).
    private var auditHead: (seq: Int, hash: String)

    init(db: SQLiteRawConnection) throws {
        self.db = db
        auditHead = AuditChain.head(try db.query(AuditChain.headSQL, []).first)
        let row = try db.query("""
            SELECT (SELECT COALESCE(MAX(rid), 0) FROM resource), (SELECT COALESCE(MAX(hid), 0) FROM resource_history),
                   (SELECT COALESCE(MAX(last_updated), 0) FROM resource_history)
            """, []).first ?? []
        nextRid = (row.first?.integer ?? 0) + 1
        nextHid = (row.dropFirst().first?.integer ?? 0) + 1
        lastTime = Int64(row.dropFirst(2).first?.integer ?? 0)
    }

    func commitBatch(_ prepared: [PreparedUnit]) throws -> [Result<[WriteOutcome], any Error>] {
        var overlay: [ResourceKey: ResourceState] = [:]
        var pending = PendingRows()
        var fresh = Set<Int>()  // rids created in this batch that are not yet in the database
        var results: [Result<[WriteOutcome], any Error>] = []
        let (savedRid, savedHid, savedTime, savedHead) = (nextRid, nextHid, lastTime, auditHead)
        try db.exec("BEGIN IMMEDIATE")
        do {
            for item in prepared {
                let unit = item.unit
                do {
                    if !item.checks.isEmpty {
                        try flush(&pending, fresh: &fresh)
                        for check in item.checks {
                            let found = try check.match.keys { sql, bindings in try bindings.map { try db.query(sql, $0) } }
                            if Set(found) != check.expected { throw StoreError.conditionChanged }
                        }
                    }
                    for key in Set(unit.writes.filter { w in overlay[w.key] == nil && (w.action != .create || w.mustNotExist) }.map(\.key)) {
                        if let state = try currentState(key) { overlay[key] = state }
                    }
                    for w in unit.records {
                        if case .insertNew(let now) = w.mode,
                           !(try db.query(PlatformRecordSQL.existsSQL, [.text(w.record.kind), .text(w.record.id), .integer(Int(now))]).isEmpty) {
                            throw StoreError.recordExists(kind: w.record.kind, id: w.record.id)
                        }
                    }
                    // Streams this unit is the first to name (ADR 029): one removed as abandoned fails it.
                    let streams = Set(unit.writes.compactMap(\.namesStream))
                    for id in streams where try db.query("SELECT 1 FROM document_stream_pending WHERE id = ?", [.text(id)]).isEmpty {
                        throw StoreError.streamRemoved(id)
                    }
                    let outcomes = try apply(unit, overlay: &overlay, pending: &pending, fresh: &fresh)
                    // The unit's rows are recorded: a failure from here on fails the batch (its units
                    // are then retried one by one), never this unit alone with half of it kept.
                    do {
                        for id in streams { _ = try db.query("DELETE FROM document_stream_pending WHERE id = ?", [.text(id)]) }
                        for w in unit.records {
                            let (sql, binds) = PlatformRecordSQL.statement(w)
                            _ = try db.query(sql, binds)
                        }
                    } catch {
                        throw BatchAbort(underlying: error)
                    }
                    results.append(.success(outcomes))
                    if !unit.audit.isEmpty {
                        let (rows, head) = AuditChain.append(unit.audit, after: auditHead)
                        pending.audit += zip(rows, unit.audit).map { ($0, $1.patients) }
                        auditHead = head
                    }
                    if let spooled = unit.spooled {
                        // A failure part-way leaves rows of the chain behind: the whole batch rolls back.
                        do {
                            try flush(&pending, fresh: &fresh)
                            try appendSpooled(spooled)
                        } catch {
                            throw BatchAbort(underlying: error)
                        }
                    }
                    if let c = unit.consumerPosition { pending.consumers[c.name] = c.position }
                } catch let error as StoreError {
                    results.append(.failure(error))
                }
            }
            try flush(&pending, fresh: &fresh)
            try db.exec("COMMIT")
        } catch {
            try? db.exec("ROLLBACK")
            (nextRid, nextHid, lastTime, auditHead) = (savedRid, savedHid, savedTime, savedHead)
            throw (error as? BatchAbort)?.underlying ?? error
        }
        return results
    }

    /// An error that fails the whole batch, not only its unit.
    private struct BatchAbort: Error {
        let underlying: any Error
    }

    /// Checks every precondition of `unit` against `overlay`, then records its rows (WritePlanner).
    private func apply(_ unit: WriteUnit, overlay: inout [ResourceKey: ResourceState], pending: inout PendingRows,
                       fresh: inout Set<Int>) throws(StoreError) -> [WriteOutcome] {
        let now = Int64(clock_realtime_micros())
        let time = max(now, lastTime + 1)
        let outcomes = try WritePlanner.apply(unit, states: &overlay, pending: &pending, fresh: &fresh, time: time,
                                              newRid: { defer { nextRid += 1 }; return nextRid },
                                              newHid: { defer { nextHid += 1 }; return nextHid })
        lastTime = time
        return outcomes
    }

    func replaceIndex(_ index: [Int: (type: String, entries: [IndexEntry])]) throws {
        try db.exec("BEGIN IMMEDIATE")
        do {
            try writeIndex(index, stored: Set(index.keys))
            // The access columns follow the index (ADR 016); a Patient is its own compartment.
            for (rid, item) in index {
                let access = AccessColumns(key: ResourceKey(item.type, ""), index: item.entries)
                try db.run("UPDATE resource SET facility = ?, compartment = CASE WHEN type = 'Patient' THEN id ELSE ? END, sensitive = ?"
                           + " WHERE rid = ?", [Self.text(access.facility), Self.text(access.compartment), Self.text(access.sensitive), .integer(rid)])
            }
            try db.exec("COMMIT")
        } catch {
            try? db.exec("ROLLBACK")
            throw error
        }
    }

    func pruneAudit(through seq: Int, hash: String, archive: String, now: Int64) throws {
        try db.exec("BEGIN IMMEDIATE")
        do {
            guard try db.query("SELECT hash FROM audit_event WHERE seq = ?", [.integer(seq)]).first?.first?.text == hash else {
                throw StoreError.conditionChanged
            }
            for (sql, binds) in zip(AuditChain.pruneSQL, AuditChain.pruneBinds(seq: seq, hash: hash, archive: archive, now: now)) {
                _ = try db.query(sql, binds)
            }
            try db.exec("COMMIT")
        } catch {
            try? db.exec("ROLLBACK")
            throw error
        }
    }

    static let indexTables = ["idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri", "idx_quantity", "idx_consent",
                              "idx_concept", "idx_closure"]

    static func text(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }

    private func currentState(_ key: ResourceKey) throws -> ResourceState? {
        guard let row = try db.query("SELECT rid, version, deleted FROM resource WHERE type = ? AND id = ?",
                                     [.text(key.type), .text(key.id)]).first,
              let rid = row[0].integer, let version = row[1].integer, let deleted = row[2].integer else { return nil }
        return ResourceState(rid: rid, version: version, deleted: deleted != 0)
    }

    /// Read events moved from the spool, chained and inserted straight from its mapped frames:
    /// tens of thousands per move, with no copy of their bytes on the heap.
    private func appendSpooled(_ spooled: SpooledEvents) throws {
        let prepared = try db.statements([AuditChain.insertEventSQL, AuditChain.insertPatientSQL, AuditChain.updateHeadSQL])
        var head = auditHead
        try spooled.forEach { event in
            let seq = head.seq + 1
            let hash = AuditChain.link(previous: head.hash, seq: seq, bytes: event.content)
            try db.run(prepared[0]) { row in
                try row.integer(1, seq)
                try row.integer(2, Int(event.recorded))
                try row.blob(3, event.content)
                try row.text(4, hash)
            }
            try event.forEachPatient { patient in
                try db.run(prepared[1]) { row in
                    try row.text(1, patient)
                    try row.integer(2, seq)
                }
            }
            head = (seq, hash)
        }
        guard head.seq != auditHead.seq else { return }
        try db.run(prepared[2]) { row in
            try row.integer(1, head.seq)
            try row.text(2, head.hash)
        }
        auditHead = head
    }

    private func flush(_ pending: inout PendingRows, fresh: inout Set<Int>) throws {
        guard !pending.isEmpty else { return }
        let history = try db.statement("INSERT INTO resource_history (hid, rid, version, last_updated, method, content) VALUES (?, ?, ?, ?, ?, ?)")
        var files: [ContentFiles.Written] = []
        var synced = false
        defer { if !synced { for file in files { close(file.fd) } } }
        for h in pending.history {
            try db.run(history) { row in
                try row.integer(1, h.hid)
                try row.integer(2, h.rid)
                try row.integer(3, h.version)
                try row.integer(4, Int(h.time))
                try row.text(5, h.method)
                if let content = h.content {
                    // Large content in a file of its own, written before this batch commits (ADR 025).
                    if let contentFiles = db.contentFiles, content.count >= contentFiles.threshold {
                        let (marker, file) = try contentFiles.store(hid: h.hid, content)
                        files.append(file)
                        try row.blob(6, marker)
                    } else {
                        try row.blob(6, content)
                    }
                } else {
                    try row.null(6)
                }
            }
        }
        if let contentFiles = db.contentFiles, !files.isEmpty {
            synced = true
            try contentFiles.sync(files)
        }
        for r in pending.resources {
            try db.run("INSERT INTO resource (rid, type, id, version, last_updated, deleted, hid, facility, compartment, sensitive)"
                       + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                       + " ON CONFLICT(rid) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,"
                       + " deleted = excluded.deleted, hid = excluded.hid, facility = excluded.facility,"
                       + " compartment = excluded.compartment, sensitive = excluded.sensitive",
                       [.integer(r.rid), .text(r.key.type), .text(r.key.id), .integer(r.version), .integer(Int(r.time)),
                        .integer(r.deleted ? 1 : 0), .integer(r.hid), Self.text(r.facility), Self.text(r.compartment), Self.text(r.sensitive)])
        }
        try writeIndex(pending.index, stored: pending.clearIndex)
        if !pending.audit.isEmpty {
            // Tens of thousands of rows when the spool moves (every read is audited): bound directly.
            let prepared = try db.statements([AuditChain.insertEventSQL, AuditChain.insertPatientSQL])
            for (event, patients) in pending.audit {
                try db.run(prepared[0]) { row in
                    try row.integer(1, event.seq)
                    try row.integer(2, Int(event.recorded))
                    try row.blob(3, event.content)
                    try row.text(4, event.hash)
                }
                for patient in patients {
                    try db.run(prepared[1]) { row in
                        try row.text(1, patient)
                        try row.integer(2, event.seq)
                    }
                }
            }
        }
        if let last = pending.audit.last?.event {
            try db.run(AuditChain.updateHeadSQL, [.integer(last.seq), .text(last.hash)])
        }
        for (name, position) in pending.consumers {
            try db.run("INSERT INTO change_consumer (name, position) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                       [.text(name), .integer(position)])
        }
        fresh.removeAll()
        pending = PendingRows()
    }

    /// Writes the index rows of the given resources. Those in `stored` may have rows already:
    /// only the difference is written (an update that leaves most search values as they were,
    /// a master Person gaining a link, touches a few index pages instead of all of them).
    private func writeIndex(_ index: [Int: (type: String, entries: [IndexEntry])], stored: Set<Int>) throws {
        // New row ids first, through the inserts prepared together (no statement looked up by its
        // SQL text per row: a dozen rows per resource, tens of thousands per batch in an import).
        let inserts = try db.statements(Self.insertSQL)
        for (rid, item) in index where !stored.contains(rid) {
            // A new row id has no rows yet: every entry is inserted as it is.
            for e in item.entries {
                let (table, values) = Self.row(item.type, e)
                try db.run(inserts[table], rid: rid, values)
            }
        }
        for (rid, item) in index where stored.contains(rid) {
            // Rows wanted, per table, as the values after `rid` (a multiset: duplicates count).
            var wanted = Array(repeating: [[SQLValue]: Int](), count: Self.indexTables.count)
            for e in item.entries {
                let (table, values) = Self.row(item.type, e)
                wanted[table][values, default: 0] += 1
            }
            for (table, name) in Self.indexTables.enumerated() {
                let columns = Self.indexColumns[table]
                for row in try db.query("SELECT rowid, \(columns.joined(separator: ", ")) FROM \(name) WHERE rid = ?", [.integer(rid)]) {
                    let values = Array(row.dropFirst())
                    if let n = wanted[table][values], n > 0 {
                        wanted[table][values] = n - 1  // already there
                    } else if let rowid = row[0].integer {
                        try db.run("DELETE FROM \(name) WHERE rowid = ?", [.integer(rowid)])
                    }
                }
                for (values, n) in wanted[table] {
                    for _ in 0..<n { try db.run(Self.insertSQL[table], [.integer(rid)] + values) }
                }
            }
        }
    }

    /// The columns after `rid` of each index table (in `indexTables` order).
    static let indexColumns = [["type", "param", "system", "code"], ["type", "param", "value", "exact"],
                               ["type", "param", "target_type", "target_id", "url"], ["type", "param", "low", "high"],
                               ["type", "param", "value"], ["type", "param", "value", "system", "code"],
                               ["type", "param", "patient", "facility", "class", "label", "verdict", "rank", "low", "high"],
                               ["type", "param", "system", "version", "code", "display", "detail"],
                               ["type", "param", "system", "ancestor", "code"]]

    /// The insert of a row into each index table (in `indexTables` order).
    static let insertSQL = zip(indexTables, indexColumns).map { name, columns in
        "INSERT INTO \(name) (rid, \(columns.joined(separator: ", "))) VALUES (?" + String(repeating: ", ?", count: columns.count) + ")"
    }

    /// An index entry as a row: its table (index into `indexTables`) and the values after `rid`.
    static func row(_ type: String, _ e: IndexEntry) -> (table: Int, values: [SQLValue]) {
        let t = SQLValue.text(type), p = SQLValue.text(e.parameter)
        func text(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
        switch e.value {
        case .token(let system, let code): return (0, [t, p, text(system), .text(code)])
        case .string(let s, let exact): return (1, [t, p, .text(s), .text(exact)])
        case .reference(let type, let id, let url): return (2, [t, p, text(type), text(id), text(url)])
        case .date(let low, let high): return (3, [t, p, .integer(Int(low)), .integer(Int(high))])
        case .uri(let u): return (4, [t, p, .text(u)])
        case .number(let n): return (5, [t, p, .double(n), .null, .null])
        case .quantity(let value, let system, let code): return (5, [t, p, .double(value), text(system), text(code)])
        case .consent(let c):
            return (6, [t, p, .text(c.patient), .text(c.facility), .text(c.resourceClass), .text(c.label), .integer(c.permit ? 1 : -1),
                        .integer(c.rank), .integer(Int(c.low)), .integer(Int(c.high))])
        case .concept(let c):
            return (7, [t, p, .text(c.system), .text(c.version), .text(c.code), text(c.display), .text(c.detail)])
        case .closure(let system, let ancestor, let code):
            return (8, [t, p, .text(system), .text(ancestor), .text(code)])
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in microseconds since the Unix epoch.
package func clock_realtime_micros() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

