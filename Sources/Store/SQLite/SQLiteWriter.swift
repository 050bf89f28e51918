import FHIRModel
import Logging
import NIOCore
import SQLiteNIO

/// The single writer of the SQLite store. Units queue up while a commit is in flight and
/// the next commit takes all of them (group commit), so many concurrent writers share
/// one fsync. Each unit stays atomic: its preconditions are checked under the writer's
/// lock, and a unit that fails is left out without affecting the others in the batch.
actor SQLiteWriter {
    private let db: SQLiteConnection
    private let logger: Logger
    private var queue: [(unit: WriteUnit, continuation: CheckedContinuation<[WriteOutcome], any Error>)] = []
    private var draining = false
    private var nextRid: Int
    private var nextHid: Int
    private var lastTime: Int64
    private var closed = false

    static let maxBatchUnits = 256

    private init(db: SQLiteConnection, logger: Logger, nextRid: Int, nextHid: Int, lastTime: Int64) {
        self.db = db
        self.logger = logger
        self.nextRid = nextRid
        self.nextHid = nextHid
        self.lastTime = lastTime
    }

    static func make(connection: SQLiteConnection, logger: Logger) async throws -> SQLiteWriter {
        let rows = try await connection.query("""
            SELECT (SELECT COALESCE(MAX(rid), 0) FROM resource) AS rid,
                   (SELECT COALESCE(MAX(hid), 0) FROM resource_history) AS hid,
                   (SELECT COALESCE(MAX(last_updated), 0) FROM resource_history) AS t
            """)
        let row = rows.first
        return SQLiteWriter(db: connection, logger: logger,
                            nextRid: (row?.column("rid")?.integer ?? 0) + 1,
                            nextHid: (row?.column("hid")?.integer ?? 0) + 1,
                            lastTime: Int64(row?.column("t")?.integer ?? 0))
    }

    func submit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        guard !closed else { throw StoreError.storage("The store is closed") }
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
        try await db.close()
    }

    private func drain() async {
        while !queue.isEmpty {
            let n = min(queue.count, Self.maxBatchUnits)
            let batch = Array(queue.prefix(n))
            queue.removeFirst(n)
            do {
                let results = try await commitBatch(batch.map(\.unit))
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
                        let results = try await commitBatch([item.unit])
                        item.continuation.resume(with: results[0])
                    } catch {
                        item.continuation.resume(throwing: StoreError.storage("\(error)"))
                    }
                }
            }
        }
        draining = false
    }

    private func commitBatch(_ units: [WriteUnit]) async throws -> [Result<[WriteOutcome], any Error>] {
        var overlay: [ResourceKey: ResourceState] = [:]
        var pending = PendingRows()
        var fresh = Set<Int>()  // rids created in this batch that are not yet in the database
        var results: [Result<[WriteOutcome], any Error>] = []
        _ = try await db.query("BEGIN IMMEDIATE")
        do {
            for unit in units {
                do {
                    if !unit.assumptions.isEmpty {
                        try await flush(&pending, fresh: &fresh)
                        for assumption in unit.assumptions {
                            let (sql, binds) = SearchSQL(.sqlite).compile(assumption.query, limit: max(assumption.expected.count + 1, 2))
                            let found = try await db.rows(sql, binds).compactMap { row -> ResourceKey? in
                                guard let t = row[0].text, let id = row[1].text else { return nil }
                                return ResourceKey(t, id)
                            }
                            if Set(found) != Set(assumption.expected) { throw StoreError.conditionChanged }
                        }
                    }
                    let lookup = unit.writes.filter { w in overlay[w.key] == nil && (w.action != .create || w.mustNotExist) }.map(\.key)
                    let known = try await currentStates(Array(Set(lookup)))
                    for (k, v) in known { overlay[k] = v }
                    results.append(.success(try apply(unit, overlay: &overlay, pending: &pending, fresh: &fresh)))
                    if let c = unit.consumerPosition { pending.consumers[c.name] = c.position }
                } catch let error as StoreError {
                    results.append(.failure(error))
                }
            }
            try await flush(&pending, fresh: &fresh)
            _ = try await db.query("COMMIT")
        } catch {
            _ = try? await db.query("ROLLBACK")
            throw error
        }
        return results
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

    /// Replaces the index rows of the given resources in one transaction (`huitong reindex`).
    func replaceIndex(_ index: [Int: (type: String, entries: [IndexEntry])]) async throws {
        _ = try await db.query("BEGIN IMMEDIATE")
        do {
            let rids = Array(index.keys)
            for chunk in rids.chunked(900) {
                let list = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for table in Self.indexTables {
                    _ = try await db.query("DELETE FROM \(table) WHERE rid IN (\(list))", chunk.map { SQLiteData.integer($0) })
                }
            }
            try await insertIndex(index)
            _ = try await db.query("COMMIT")
        } catch {
            _ = try? await db.query("ROLLBACK")
            throw error
        }
    }

    /// `ANALYZE` (full) or `PRAGMA optimize` (only tables whose statistics are stale).
    func analyze(full: Bool = true) async throws {
        _ = try await db.query(full ? "ANALYZE" : "PRAGMA optimize")
    }

    static let indexTables = ["idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri", "idx_quantity"]

    private func currentStates(_ keys: [ResourceKey]) async throws -> [ResourceKey: ResourceState] {
        var result: [ResourceKey: ResourceState] = [:]
        for chunk in keys.chunked(400) {
            let placeholders = Array(repeating: "(type = ? AND id = ?)", count: chunk.count).joined(separator: " OR ")
            let binds = chunk.flatMap { [SQLiteData.text($0.type), .text($0.id)] }
            for row in try await db.query("SELECT rid, type, id, version, deleted FROM resource WHERE " + placeholders, binds) {
                let c = row.columns
                guard let rid = c[0].data.integer, let t = c[1].data.string, let id = c[2].data.string,
                      let v = c[3].data.integer, let d = c[4].data.integer else { continue }
                result[ResourceKey(t, id)] = ResourceState(rid: rid, version: v, deleted: d != 0)
            }
        }
        return result
    }

    private func flush(_ pending: inout PendingRows, fresh: inout Set<Int>) async throws {
        guard !pending.isEmpty else { return }
        for chunk in pending.history.chunked(500) {
            var binds: [SQLiteData] = []
            binds.reserveCapacity(chunk.count * 6)
            for h in chunk {
                binds.append(.integer(h.hid)); binds.append(.integer(h.rid)); binds.append(.integer(h.version))
                binds.append(.integer(Int(h.time))); binds.append(.text(h.method))
                binds.append(h.content.map { .blob(ByteBuffer(bytes: $0)) } ?? .null)
            }
            _ = try await db.query("INSERT INTO resource_history (hid, rid, version, last_updated, method, content) VALUES "
                                   + rowPlaceholders(6, chunk.count), binds)
        }
        for chunk in pending.resources.chunked(1000) {
            var binds: [SQLiteData] = []
            for r in chunk {
                binds.append(contentsOf: [.integer(r.rid), .text(r.key.type), .text(r.key.id), .integer(r.version),
                                          .integer(Int(r.time)), .integer(r.deleted ? 1 : 0), .integer(r.hid)])
            }
            _ = try await db.query("INSERT INTO resource (rid, type, id, version, last_updated, deleted, hid) VALUES "
                                   + rowPlaceholders(7, chunk.count)
                                   + " ON CONFLICT(rid) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,"
                                   + " deleted = excluded.deleted, hid = excluded.hid", binds)
        }
        if !pending.clearIndex.isEmpty {
            for chunk in Array(pending.clearIndex).chunked(900) {
                let list = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                let binds = chunk.map { SQLiteData.integer($0) }
                for table in Self.indexTables {
                    _ = try await db.query("DELETE FROM \(table) WHERE rid IN (\(list))", binds)
                }
            }
        }
        try await insertIndex(pending.index)
        for (name, position) in pending.consumers {
            _ = try await db.query("INSERT INTO change_consumer (name, position) VALUES (?, ?)"
                                   + " ON CONFLICT(name) DO UPDATE SET position = excluded.position", [.text(name), .integer(position)])
        }
        fresh.removeAll()
        pending = PendingRows()
    }

    private func insertIndex(_ index: [Int: (type: String, entries: [IndexEntry])]) async throws {
        var token: [SQLiteData] = [], string: [SQLiteData] = [], reference: [SQLiteData] = [], date: [SQLiteData] = [], uri: [SQLiteData] = []
        var quantity: [SQLiteData] = []
        func flushTable(_ binds: inout [SQLiteData], _ sqlPrefix: String, _ columns: Int, force: Bool) async throws {
            let rows = binds.count / columns
            guard rows > 0, force || rows >= 1000 else { return }
            _ = try await db.query(sqlPrefix + rowPlaceholders(columns, rows), binds)
            binds.removeAll(keepingCapacity: true)
        }
        let tokenSQL = "INSERT INTO idx_token (rid, type, param, system, code) VALUES "
        let stringSQL = "INSERT INTO idx_string (rid, type, param, value, exact) VALUES "
        let referenceSQL = "INSERT INTO idx_reference (rid, type, param, target_type, target_id, url) VALUES "
        let dateSQL = "INSERT INTO idx_date (rid, type, param, low, high) VALUES "
        let uriSQL = "INSERT INTO idx_uri (rid, type, param, value) VALUES "
        let quantitySQL = "INSERT INTO idx_quantity (rid, type, param, value, system, code) VALUES "
        for (rid, item) in index {
            let r = SQLiteData.integer(rid), t = SQLiteData.text(item.type)
            for e in item.entries {
                let p = SQLiteData.text(e.parameter)
                switch e.value {
                case .token(let system, let code):
                    token.append(contentsOf: [r, t, p, system.map { .text($0) } ?? .null, .text(code)])
                case .string(let s, let exact):
                    string.append(contentsOf: [r, t, p, .text(s), .text(exact)])
                case .reference(let type, let id, let url):
                    reference.append(contentsOf: [r, t, p, type.map { .text($0) } ?? .null, id.map { .text($0) } ?? .null, url.map { .text($0) } ?? .null])
                case .date(let low, let high):
                    date.append(contentsOf: [r, t, p, .integer(Int(low)), .integer(Int(high))])
                case .uri(let u):
                    uri.append(contentsOf: [r, t, p, .text(u)])
                case .number(let n):
                    quantity.append(contentsOf: [r, t, p, .float(n), .null, .null])
                case .quantity(let value, let system, let code):
                    quantity.append(contentsOf: [r, t, p, .float(value), system.map { .text($0) } ?? .null, code.map { .text($0) } ?? .null])
                }
            }
            try await flushTable(&token, tokenSQL, 5, force: false)
            try await flushTable(&string, stringSQL, 5, force: false)
            try await flushTable(&reference, referenceSQL, 6, force: false)
            try await flushTable(&date, dateSQL, 5, force: false)
            try await flushTable(&uri, uriSQL, 4, force: false)
            try await flushTable(&quantity, quantitySQL, 6, force: false)
        }
        try await flushTable(&token, tokenSQL, 5, force: true)
        try await flushTable(&string, stringSQL, 5, force: true)
        try await flushTable(&reference, referenceSQL, 6, force: true)
        try await flushTable(&date, dateSQL, 5, force: true)
        try await flushTable(&uri, uriSQL, 4, force: true)
        try await flushTable(&quantity, quantitySQL, 6, force: true)
    }

    private func rowPlaceholders(_ columns: Int, _ rows: Int) -> String {
        let row = "(" + Array(repeating: "?", count: columns).joined(separator: ",") + ")"
        return Array(repeating: row, count: rows).joined(separator: ",")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in microseconds since the Unix epoch.
func clock_realtime_micros() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}
