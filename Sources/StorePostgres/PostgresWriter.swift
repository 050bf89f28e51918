import FHIRModel
import Logging
import NIOCore
import PostgresNIO
import Store

/// Commits write units to PostgreSQL, one transaction per unit, safely alongside other nodes:
/// row locks (`FOR UPDATE`) order concurrent updates of a resource, transaction-scoped advisory
/// locks serialize conditional writes that depend on the same search, and the unique
/// (type, id) index stops two creates of one id. Races the database detects (unique violation,
/// deadlock, serialization failure) re-run the unit; preconditions are then checked again.
struct PostgresWriter: Sendable {
    let client: PostgresClient
    let logger: Logger

    static let maxAttempts = 8

    func commit(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        var attempt = 1
        while true {
            do {
                return try await commitOnce(unit)
            } catch let error as StoreError {
                throw error
            } catch {
                let state = PostgresSQL.sqlState(error)
                // 23505 unique_violation (a concurrent create of the same id), 40P01 deadlock,
                // 40001 serialization failure: the unit is re-run from the start.
                guard ["23505", "40P01", "40001"].contains(state ?? ""), attempt < Self.maxAttempts else {
                    throw StoreError.storage(PostgresSQL.describe(error))
                }
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
            }
        }
    }

    private func commitOnce(_ unit: WriteUnit) async throws -> [WriteOutcome] {
        try await client.transaction(logger: logger) { connection in try await write(unit, on: connection) }
    }

    private func write(_ unit: WriteUnit, on connection: PostgresConnection) async throws -> [WriteOutcome] {
        let tx = PostgresExecutor(target: .connection(connection), logger: logger)
        // Conditional writes: one lock per distinct search, taken in a fixed order, then the
        // search re-run; a concurrent writer of the same condition waits here until we commit.
        if !unit.assumptions.isEmpty {
            // One statement: `unnest` yields the keys in the array's order, so every writer takes
            // them in ascending order and two can never wait for each other.
            let keys = Set(unit.assumptions.flatMap(\.locks).map(Self.lockKey)).sorted()
            if !keys.isEmpty {
                var binds = PostgresBindings(capacity: 1)
                binds.append(keys)
                try await connection.query(PostgresQuery(unsafeSQL: "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS u(k)",
                                                         binds: binds), logger: logger)
            }
            let reads = SQLReadQueries(tx)
            for assumption in unit.assumptions {
                let found = try await reads.keys(assumption.query, limit: max(assumption.expected.count + 1, 2))
                if Set(found) != Set(assumption.expected) { throw StoreError.conditionChanged }
            }
        }
        // Current states of the keys that may exist, locked until commit.
        var states: [ResourceKey: ResourceState] = [:]
        let lookup = Set(unit.writes.filter { $0.action != .create || $0.mustNotExist }.map(\.key))
            .sorted { ($0.type, $0.id) < ($1.type, $1.id) }
        for chunk in lookup.chunked(500) {
            let sql = "SELECT rid, type, id, version, deleted FROM resource WHERE (type, id) IN ("
                + Array(repeating: "(?, ?)", count: chunk.count).joined(separator: ",") + ") ORDER BY type, id FOR UPDATE"
            for row in try await tx.query(sql, chunk.flatMap { [SQLValue.text($0.type), .text($0.id)] }) {
                guard let rid = row[0].integer, let t = row[1].text, let id = row[2].text,
                      let version = row[3].integer, let deleted = row[4].integer else { continue }
                states[ResourceKey(t, id)] = ResourceState(rid: rid, version: version, deleted: deleted != 0)
            }
        }
        // The database clock (one time source for every node), read after the locks so a
        // later version of a resource never carries an earlier time; ids from the sequences.
        let n = unit.writes.count
        let allocation = try await connection.query("""
            SELECT (extract(epoch from clock_timestamp()) * 1000000)::int8,
                ARRAY(SELECT nextval('resource_rid') FROM generate_series(1, \(n))),
                ARRAY(SELECT nextval('history_hid') FROM generate_series(1, \(n)))
            """, logger: logger)
        var time: Int64 = 0
        var rids: [Int] = [], hids: [Int] = []
        for try await row in allocation {
            (time, rids, hids) = try row.decode((Int64, [Int], [Int]).self)
        }
        var pending = PendingRows()
        var fresh = Set<Int>()
        var nextRid = rids.makeIterator(), nextHid = hids.makeIterator()
        let outcomes = try WritePlanner.apply(unit, states: &states, pending: &pending, fresh: &fresh, time: time,
                                              newRid: { nextRid.next()! }, newHid: { nextHid.next()! })
        try await PostgresRows.insert(pending, on: connection, logger: logger)
        try await PlatformRecordSQL.apply(unit.records) { sql, binds in try await tx.query(sql, binds) }
        // Streams this unit is the first to name are no longer pending; one removed as abandoned
        // (its mark gone) fails the unit. The mark's row lock orders this against the sweep.
        for id in Set(unit.writes.compactMap(\.namesStream)).sorted() {
            if try await tx.query("DELETE FROM document_stream_pending WHERE id = ? RETURNING id", [.text(id)]).isEmpty {
                throw StoreError.streamRemoved(id)
            }
        }
        if !unit.writes.isEmpty {
            // Delivered to every listening node when (and only if) the transaction commits.
            try await connection.query(PostgresQuery(unsafeSQL: "SELECT pg_notify('\(PostgresStore.changesChannel)', '')"), logger: logger)
        }
        if !unit.audit.isEmpty {
            // Last, so the chain head's row lock (which orders every node's appends) is held only
            // from here to the commit; the events, their patients and the new head are one statement.
            let head = AuditChain.head(try await tx.query(AuditChain.headSQL + " FOR UPDATE", []).first)
            let (rows, newHead) = AuditChain.append(unit.audit, after: head)
            try await PostgresRows.appendAudit(rows, patients: unit.audit.map(\.patients), head: newHead, on: connection, logger: logger)
        }
        return outcomes
    }

    /// A stable 64-bit key for an advisory lock (FNV-1a; the same on every node, unlike `Hasher`).
    static func lockKey(_ text: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int(Int64(bitPattern: hash))
    }
}
