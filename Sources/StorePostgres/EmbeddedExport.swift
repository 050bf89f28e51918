import FHIRModel
import Logging
import NIOCore
import PostgresNIO
import Store

/// Copies an embedded (SQLite) store into PostgreSQL — `huitong export --to postgres://...` —
/// so a county that started on one machine moves up without losing anything: every version
/// with its exact stored bytes, row ids, version numbers, times and index rows. Resources go
/// over in row-id order, 1,000 per PostgreSQL transaction with their history and index rows,
/// and the last row id copied is saved in the same transaction: an interrupted export
/// continues where it stopped when run again. The embedded store must not change meanwhile
/// (its data-folder lock keeps a server off it).
public enum EmbeddedExport {
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    /// Copies `source` into `target`; returns the number of resources copied by this run.
    /// `progress` gets (done, total) after each batch.
    public static func run(from source: SQLiteStore, sourceName: String, to target: PostgresStore,
                           progress: @Sendable (Int, Int) -> Void) async throws -> Int {
        let from = source.reads
        let to = target.current
        let saved = try await to.db.query("SELECT last_rid, finished FROM export_progress WHERE source = ?", [.text(sourceName)]).first
        if saved == nil, try await to.scalar("SELECT COUNT(*) FROM (SELECT 1 FROM resource LIMIT 1) AS any_row") > 0 {
            throw Refused(description: "The target database already holds resources that did not come from \(sourceName): export only into an empty database")
        }
        var after = saved?[0].integer ?? 0
        let total = try await from.scalar("SELECT COUNT(*) FROM resource")
        var done = try await from.scalar("SELECT COUNT(*) FROM resource WHERE rid <= ?", [.integer(after)])
        var copied = 0
        progress(done, total)
        while true {
            let resources = try await from.db.query(
                "SELECT rid, type, id, version, last_updated, deleted, hid FROM resource WHERE rid > ? ORDER BY rid LIMIT 1000",
                [.integer(after)])
            guard let first = resources.first?[0].integer, let last = resources.last?[0].integer else { break }
            let range: [SQLValue] = [.integer(first), .integer(last)]
            var pending = PendingRows()
            let index = try await indexRows(from, range)
            var compartments: [Int: String] = [:]
            for row in resources {
                guard let rid = row[0].integer, let type = row[1].text, let id = row[2].text, let version = row[3].integer,
                      let time = row[4].integer, let deleted = row[5].integer, let hid = row[6].integer else { continue }
                let key = ResourceKey(type, id)
                let entries = index[rid]?.entries ?? []
                let access = deleted != 0 ? AccessColumns(facility: nil, compartment: nil, sensitive: nil) : AccessColumns(key: key, index: entries)
                compartments[rid] = access.compartment
                pending.resources.append(.init(rid: rid, key: key, version: version, time: Int64(time), deleted: deleted != 0,
                                               hid: hid, compartment: access.compartment, facility: access.facility, sensitive: access.sensitive))
            }
            // Each batch commits whole, so a resumed export finds no rows of its next batch: nothing to clear.
            pending.index = index
            for row in try await from.db.query(
                "SELECT hid, rid, version, last_updated, method, content FROM resource_history WHERE rid BETWEEN ? AND ? ORDER BY hid", range) {
                guard let hid = row[0].integer, let rid = row[1].integer, let version = row[2].integer,
                      let time = row[3].integer, let method = row[4].text else { continue }
                pending.history.append(.init(hid: hid, rid: rid, version: version, time: Int64(time), method: method,
                                             content: row[5].blob.map { Array($0.readableBytesView) }, compartment: compartments[rid]))
            }
            try await target.primary.transaction(logger: target.logger) { connection in
                try await PostgresRows.insert(pending, on: connection, logger: target.logger)
                try await connection.query("""
                    INSERT INTO export_progress (source, last_rid) VALUES (\(sourceName), \(last))
                    ON CONFLICT (source) DO UPDATE SET last_rid = excluded.last_rid, updated_at = now()
                    """, logger: target.logger)
            }
            after = last
            done += resources.count
            copied += resources.count
            progress(done, total)
        }
        try await copyPlatformRecordsAndAudit(from: from, to: target)
        try await copyDocumentStreams(from: source, to: target)
        // New rows on PostgreSQL continue after the copied ids.
        _ = try await to.db.query("SELECT setval('resource_rid', GREATEST((SELECT COALESCE(MAX(rid), 0) FROM resource), 1))", [])
        _ = try await to.db.query("SELECT setval('history_hid', GREATEST((SELECT COALESCE(MAX(hid), 0) FROM resource_history), 1))", [])
        _ = try await to.db.query("UPDATE export_progress SET finished = true, updated_at = now() WHERE source = ?", [.text(sourceName)])
        try await target.analyze()
        return copied
    }

    /// The document streams (ADR 029), under their ids: the copied Binaries name them. Streams
    /// already whole on PostgreSQL are skipped; one cut short by an interrupted export is copied
    /// again. Pending ones are copied pending, the others named (settled as they are made whole).
    static func copyDocumentStreams(from source: SQLiteStore, to target: PostgresStore) async throws {
        guard let files = source.documentStreams as? FileDocumentStreams else { return }
        let to = PostgresDocumentStreams(client: target.primary, logger: target.logger)
        let pending = try await files.pendingIDs()
        for id in try files.storedIDs() {
            if try await to.size(id) != nil {
                // Whole already (an interrupted export): named on SQLite, named here.
                if !pending.contains(id) { try await to.settle(id) }
                continue
            }
            try await to.discardCopy(id)
            let writer = try await to.create(id: id)
            // Named on SQLite: settled as it is made whole, in one statement.
            writer.settling = !pending.contains(id)
            let size = try await files.size(id) ?? 0
            var offset = 0
            while offset < size {
                let chunk = try await files.read(id, offset: offset, count: min(PostgresDocumentStreams.chunk, size - offset))
                guard chunk.readableBytes > 0 else { throw StoreError.storage("Document stream \(id) ended at \(offset) of \(size) bytes") }
                try await writer.append(chunk)
                offset += chunk.readableBytes
            }
            _ = try await writer.finish()
        }
    }

    /// The platform's own records (clients, users) and the whole audit chain, which must survive
    /// the move unchanged (the chain verifies on PostgreSQL as it did on SQLite). Resumable: events
    /// already copied are skipped.
    static func copyPlatformRecordsAndAudit(from: SQLReadQueries, to target: PostgresStore) async throws {
        let to = target.current
        for row in try await from.db.query("SELECT kind, id, content, expires FROM platform_record", []) {
            guard let record = PlatformRecordSQL.record(row) else { continue }
            let (sql, binds) = PlatformRecordSQL.statement(RecordWrite(record))
            _ = try await to.db.query(sql, binds)
        }
        // Archive anchors first: the copied chain continues from the last one.
        for row in try await from.db.query("SELECT seq, hash, archived_at, archive FROM audit_anchor", []) {
            _ = try await to.db.query("INSERT INTO audit_anchor (seq, hash, archived_at, archive) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", row)
        }
        var after = try await to.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_event")
        while true {
            let events = try await from.db.query("SELECT seq, recorded, content, hash FROM audit_event WHERE seq > ? ORDER BY seq LIMIT 5000",
                                                 [.integer(after)])
            guard let first = events.first?[0].integer, let last = events.last?[0].integer, let head = events.last?[3].text else { break }
            let patients = try await from.db.query("SELECT patient, seq FROM audit_patient WHERE seq BETWEEN ? AND ?",
                                                   [.integer(first), .integer(last)])
            try await target.primary.transaction(logger: target.logger) { connection in
                let tx = PostgresExecutor(target: .connection(connection), logger: target.logger)
                for e in events { _ = try await tx.query(AuditChain.insertEventSQL, e) }
                for p in patients { _ = try await tx.query(AuditChain.insertPatientSQL, p) }
                _ = try await tx.query(AuditChain.updateHeadSQL, [.integer(last), .text(head)])
            }
            after = last
        }
    }

    /// The index rows of the resources with row ids in `range`, as entries again.
    static func indexRows(_ from: SQLReadQueries, _ range: [SQLValue]) async throws -> [Int: (type: String, entries: [IndexEntry])] {
        var index: [Int: (type: String, entries: [IndexEntry])] = [:]
        func add(_ sql: String, _ value: ([SQLValue]) -> IndexValue?) async throws {
            for row in try await from.db.query(sql + " WHERE rid BETWEEN ? AND ?", range) {
                guard let rid = row[0].integer, let type = row[1].text, let param = row[2].text, let v = value(row) else { continue }
                index[rid, default: (type, [])].entries.append(IndexEntry(param, v))
            }
        }
        try await add("SELECT rid, type, param, system, code FROM idx_token") { r in r[4].text.map { .token(system: r[3].text, code: $0) } }
        try await add("SELECT rid, type, param, value, exact FROM idx_string") { r in
            r[3].text.map { .string($0, exact: r[4].text ?? $0) }
        }
        try await add("SELECT rid, type, param, target_type, target_id, url FROM idx_reference") { r in
            .reference(type: r[3].text, id: r[4].text, url: r[5].text)
        }
        try await add("SELECT rid, type, param, low, high FROM idx_date") { r in
            guard let low = r[3].integer, let high = r[4].integer else { return nil }
            return .date(low: Int64(low), high: Int64(high))
        }
        try await add("SELECT rid, type, param, value FROM idx_uri") { r in r[3].text.map { .uri($0) } }
        try await add("SELECT rid, type, param, value, system, code FROM idx_quantity") { r in
            r[3].double.map { .quantity(value: $0, system: r[4].text, code: r[5].text) }
        }
        try await add("SELECT rid, type, param, patient, facility, class, label, verdict, rank, low, high FROM idx_consent") { r in
            guard let patient = r[3].text, let facility = r[4].text, let resourceClass = r[5].text, let label = r[6].text,
                  let verdict = r[7].integer, let rank = r[8].integer, let low = r[9].integer, let high = r[10].integer else { return nil }
            return .consent(ConsentRule(patient: patient, facility: facility, resourceClass: resourceClass, label: label, permit: verdict > 0,
                                        rank: rank, low: Int64(low), high: Int64(high)))
        }
        try await add("SELECT rid, type, param, system, version, code, display, detail FROM idx_concept") { r in
            guard let system = r[3].text, let version = r[4].text, let code = r[5].text, let detail = r[7].text else { return nil }
            return .concept(ConceptEntry(system: system, version: version, code: code, display: r[6].text, detail: detail))
        }
        try await add("SELECT rid, type, param, system, ancestor, code FROM idx_closure") { r in
            guard let system = r[3].text, let ancestor = r[4].text, let code = r[5].text else { return nil }
            return .closure(system: system, ancestor: ancestor, code: code)
        }
        return index
    }
}
