/// The platform's own state beside the FHIR resources — OAuth clients, user accounts, used
/// client-assertion ids — kept by kind and id, as JSON text. Not served by the FHIR API.
public struct PlatformRecord: Sendable, Equatable {
    public let kind: String
    public let id: String
    public let content: String
    /// Microseconds since the Unix epoch after which the record counts as absent (nil: never).
    public let expires: Int64?

    public init(kind: String, id: String, content: String, expires: Int64? = nil) {
        self.kind = kind
        self.id = id
        self.content = content
        self.expires = expires
    }
}

/// A change of one platform record, committed with the rest of its `WriteUnit`.
public struct RecordWrite: Sendable {
    public enum Mode: Sendable {
        /// Insert or replace.
        case put
        /// Insert; fails the unit with `StoreError.recordExists` when an unexpired record has
        /// the same kind and id (one-time values such as a client assertion's `jti`).
        case insertNew(now: Int64)
        case delete
        /// Deletes every record of any kind that expired before the time (the record is unused).
        case purgeExpired(before: Int64)
    }

    public let record: PlatformRecord
    public let mode: Mode

    public init(_ record: PlatformRecord, mode: Mode = .put) {
        self.record = record
        self.mode = mode
    }

    public static func delete(kind: String, id: String) -> RecordWrite {
        RecordWrite(PlatformRecord(kind: kind, id: id, content: ""), mode: .delete)
    }

    /// Removes the records that expired before `before` (they already count as absent).
    public static func purgeExpired(before: Int64) -> RecordWrite {
        RecordWrite(PlatformRecord(kind: "", id: "", content: ""), mode: .purgeExpired(before: before))
    }
}

/// The statements for platform records, the same text on every SQL backend.
package enum PlatformRecordSQL {
    /// Work a migration leaves for the next start (`pending/reindex`: derived columns and rows to
    /// rebuild from stored content).
    package static let pendingKind = "pending"
    package static func statement(_ write: RecordWrite) -> (sql: String, binds: [SQLValue]) {
        let r = write.record
        let upsert = "INSERT INTO platform_record (kind, id, content, expires) VALUES (?, ?, ?, ?)"
            + " ON CONFLICT (kind, id) DO UPDATE SET content = excluded.content, expires = excluded.expires"
        let values: [SQLValue] = [.text(r.kind), .text(r.id), .text(r.content), r.expires.map { .integer(Int($0)) } ?? .null]
        switch write.mode {
        case .put:
            return (upsert, values)
        case .insertNew(let now):
            // Replaces only an expired record; RETURNING says whether a row was written.
            return (upsert + " WHERE platform_record.expires IS NOT NULL AND platform_record.expires < ? RETURNING kind",
                    values + [.integer(Int(now))])
        case .delete:
            return ("DELETE FROM platform_record WHERE kind = ? AND id = ?", [.text(r.kind), .text(r.id)])
        case .purgeExpired(let before):
            // Uses the partial index platform_record_expires (only records that can expire).
            return ("DELETE FROM platform_record WHERE expires IS NOT NULL AND expires < ?", [.integer(Int(before))])
        }
    }

    /// Runs the unit's record writes on a connection inside its transaction.
    package static func apply(_ writes: [RecordWrite], _ run: (String, [SQLValue]) async throws -> [[SQLValue]]) async throws {
        for w in writes {
            let (sql, binds) = statement(w)
            let rows = try await run(sql, binds)
            if case .insertNew = w.mode, rows.isEmpty { throw StoreError.recordExists(kind: w.record.kind, id: w.record.id) }
        }
    }

    /// Whether an unexpired record blocks an `insertNew` (checked before a unit's other writes).
    package static let existsSQL = "SELECT 1 FROM platform_record WHERE kind = ? AND id = ? AND (expires IS NULL OR expires >= ?)"

    package static let columns = "kind, id, content, expires"

    /// One unexpired record by kind and id (binds: kind, id, now).
    package static let selectOne = "SELECT \(columns) FROM platform_record WHERE kind = ? AND id = ? AND (expires IS NULL OR expires >= ?)"

    package static func record(_ row: [SQLValue]) -> PlatformRecord? {
        guard row.count >= 4, let kind = row[0].text, let id = row[1].text, let content = row[2].text else { return nil }
        return PlatformRecord(kind: kind, id: id, content: content, expires: row[3].integer.map(Int64.init))
    }
}

extension SQLReadQueries {
    package func record(kind: String, id: String, now: Int64) async throws -> PlatformRecord? {
        try await db.query(PlatformRecordSQL.selectOne, [.text(kind), .text(id), .integer(Int(now))]).first.flatMap(PlatformRecordSQL.record)
    }

    package func records(kind: String, now: Int64) async throws -> [PlatformRecord] {
        try await db.query("SELECT \(PlatformRecordSQL.columns) FROM platform_record WHERE kind = ?"
                           + " AND (expires IS NULL OR expires >= ?) ORDER BY id", [.text(kind), .integer(Int(now))])
            .compactMap(PlatformRecordSQL.record)
    }

    package func records(kind: String, after: String, limit: Int, now: Int64) async throws -> [PlatformRecord] {
        try await db.query("SELECT \(PlatformRecordSQL.columns) FROM platform_record WHERE kind = ? AND id > ?"
                           + " AND (expires IS NULL OR expires >= ?) ORDER BY id LIMIT ?",
                           [.text(kind), .text(after), .integer(Int(now)), .integer(limit)])
            .compactMap(PlatformRecordSQL.record)
    }
}
