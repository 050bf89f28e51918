import Crypto
import Foundation
import NIOCore

/// One audit event to append to the chain with a unit (全程留痕): the AuditEvent JSON (without
/// `id`, which is its place in the chain) and the patients it concerns, for residents' queries.
public struct AuditRecord: Sendable, Equatable {
    /// Microseconds since the Unix epoch.
    public let recorded: Int64
    public let content: [UInt8]
    /// References (`Patient/x`) of the patients whose data the event touched.
    public let patients: [String]

    public init(recorded: Int64, content: [UInt8], patients: [String]) {
        self.recorded = recorded
        self.content = content
        self.patients = patients
    }
}

/// An audit event as stored: its place in the chain (`seq`, also its AuditEvent id) and hash.
public struct StoredAuditEvent: Sendable, Equatable {
    public let seq: Int
    public let recorded: Int64
    public let content: [UInt8]
    public let hash: String
}

/// What `verifyAuditChain` found: how many events it checked and the first broken link.
public struct AuditChainReport: Sendable, Equatable {
    public let checked: Int
    /// The hash of the last event (the chain head).
    public let head: String?
    /// The first event whose stored hash, content or place does not fit the chain.
    public let broken: (seq: Int, reason: String)?
    /// Events through this one were archived (`huitong audit archive`); the chain was checked from its anchor.
    public var archivedThrough = 0

    public init(checked: Int, head: String?, broken: (seq: Int, reason: String)?, archivedThrough: Int = 0) {
        self.checked = checked
        self.head = head
        self.broken = broken
        self.archivedThrough = archivedThrough
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.checked == b.checked && a.head == b.head && a.broken?.seq == b.broken?.seq && a.broken?.reason == b.broken?.reason
    }
}

/// The hash chain over audit events: each event's hash is SHA-256 over the previous hash, its
/// place and its exact bytes, so editing, deleting, inserting or reordering any event changes
/// every later hash. Computed by the writer as it appends (one writer, or under a lock).
package enum AuditChain {
    package static let genesis = String(repeating: "0", count: 64)

    package static func link(previous: String, seq: Int, content: [UInt8]) -> String {
        content.withUnsafeBytes { link(previous: previous, seq: seq, bytes: $0) }
    }

    /// The same over bytes where they lie (events moved from the spool).
    package static func link(previous: String, seq: Int, bytes: UnsafeRawBufferPointer) -> String {
        // `previous + "\n" + seq + "\n" + content`, fed piece by piece (no joined copy).
        var hasher = SHA256()
        func feed(_ text: String) {
            var text = text
            text.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        feed(previous)
        feed("\n")
        feed(String(seq))
        feed("\n")
        hasher.update(bufferPointer: bytes)
        return hex(hasher.finalize())
    }

    static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex, without `String(format:)` (which costs more than the hash itself).
    package static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Rows `(seq, recorded, content, hash)` for the records appended after `head`, and the new head.
    package static func append(_ records: [AuditRecord], after head: (seq: Int, hash: String))
        -> (rows: [StoredAuditEvent], head: (seq: Int, hash: String)) {
        var head = head
        var rows: [StoredAuditEvent] = []
        for r in records {
            let seq = head.seq + 1
            let hash = link(previous: head.hash, seq: seq, content: r.content)
            rows.append(StoredAuditEvent(seq: seq, recorded: r.recorded, content: r.content, hash: hash))
            head = (seq, hash)
        }
        return (rows, head)
    }

    /// The chain head as the writer last left it (one row, id 1).
    package static let headSQL = "SELECT seq, hash FROM audit_head WHERE id = 1"

    /// Rows to insert for appended events: `(seq, recorded, content, hash)` and `(patient, seq)`.
    package static let insertEventSQL = "INSERT INTO audit_event (seq, recorded, content, hash) VALUES (?, ?, ?, ?)"
    package static let insertPatientSQL = "INSERT INTO audit_patient (patient, seq) VALUES (?, ?) ON CONFLICT DO NOTHING"
    package static let updateHeadSQL = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"

    /// Archiving: the anchor (last archived event) is recorded and the events through it removed,
    /// in one transaction, only if the event at `seq` still has the hash the archive ends with.
    package static let pruneSQL: [String] = [
        "INSERT INTO audit_anchor (seq, hash, archived_at, archive) VALUES (?, ?, ?, ?)",
        "DELETE FROM audit_patient WHERE seq <= ?",
        "DELETE FROM audit_event WHERE seq <= ?",
    ]
    package static let anchorSQL = "SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1"

    package static func pruneBinds(seq: Int, hash: String, archive: String, now: Int64) -> [[SQLValue]] {
        [[.integer(seq), .text(hash), .integer(Int(now)), .text(archive)], [.integer(seq)], [.integer(seq)]]
    }

    package static func head(_ row: [SQLValue]?) -> (seq: Int, hash: String) {
        guard let row, let seq = row.first?.integer, let hash = row.dropFirst().first?.text else { return (0, genesis) }
        return (seq, hash)
    }
}

extension SQLReadQueries {
    static let auditColumns = "e.seq, e.recorded, e.content, e.hash"

    static func auditEvent(_ row: [SQLValue]) -> StoredAuditEvent? {
        guard row.count >= 4, let seq = row[0].integer, let recorded = row[1].integer, let content = row[2].blob,
              let hash = row[3].text else { return nil }
        return StoredAuditEvent(seq: seq, recorded: Int64(recorded), content: Array(content.readableBytesView), hash: hash)
    }

    /// Events about any of `patients` (all events when empty), newest first, before `seq` `before`.
    package func auditEvents(patients: [String], before: Int?, limit: Int) async throws -> [StoredAuditEvent] {
        var binds: [SQLValue] = []
        var sql: String
        if patients.isEmpty {
            sql = "SELECT \(Self.auditColumns) FROM audit_event e WHERE 1 = 1"
        } else {
            sql = "SELECT \(Self.auditColumns) FROM audit_event e WHERE e.seq IN (SELECT seq FROM audit_patient WHERE patient IN ("
                + Array(repeating: "?", count: patients.count).joined(separator: ", ") + "))"
            binds = patients.map { .text($0) }
        }
        if let before {
            sql += " AND e.seq < ?"
            binds.append(.integer(before))
        }
        sql += " ORDER BY e.seq DESC LIMIT ?"
        binds.append(.integer(limit))
        return try await db.query(sql, binds).compactMap(Self.auditEvent)
    }

    package func auditEvent(seq: Int) async throws -> StoredAuditEvent? {
        try await db.query("SELECT \(Self.auditColumns) FROM audit_event e WHERE e.seq = ?", [.integer(seq)]).first.flatMap(Self.auditEvent)
    }

    /// The newest archive anchor: the last archived event's place and hash ((0, genesis): none).
    package func auditAnchor() async throws -> (seq: Int, hash: String) {
        AuditChain.head(try await db.query(AuditChain.anchorSQL, []).first)
    }

    /// Events after `seq` in chain order.
    package func auditEvents(after seq: Int, limit: Int) async throws -> [StoredAuditEvent] {
        try await db.query("SELECT \(Self.auditColumns) FROM audit_event e WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
                           [.integer(seq), .integer(limit)]).compactMap(Self.auditEvent)
    }

    /// The last event that an archive of everything recorded before `before` (µs) ends with: every
    /// event up to it was recorded earlier (0: none).
    package func auditArchiveCut(before: Int64) async throws -> Int {
        let firstKept = try await db.query("SELECT MIN(seq) FROM audit_event WHERE recorded >= ?", [.integer(Int(before))]).first?.first?.integer
        if let firstKept { return firstKept - 1 }
        return try await db.query("SELECT COALESCE(MAX(seq), 0) FROM audit_event", []).first?.first?.integer ?? 0
    }

    /// Recomputes the chain from the first event (after the archive anchor, if events were
    /// archived), in batches; reports the first event that does not fit (a changed byte, a
    /// removed or inserted event) and whether the head row agrees.
    package func verifyAuditChain(batch: Int = 5_000, progress: @Sendable (Int) -> Void = { _ in }) async throws -> AuditChainReport {
        let anchor = try await auditAnchor()
        var previous = anchor.hash
        var expectedSeq = anchor.seq + 1
        var checked = 0
        while true {
            let rows = try await db.query("SELECT \(Self.auditColumns) FROM audit_event e WHERE e.seq >= ? ORDER BY e.seq LIMIT ?",
                                          [.integer(expectedSeq), .integer(batch)])
            if rows.isEmpty { break }
            for row in rows {
                guard let event = Self.auditEvent(row) else {
                    return AuditChainReport(checked: checked, head: previous, broken: (row.first?.integer ?? expectedSeq, "unreadable row"))
                }
                if event.seq != expectedSeq {
                    return AuditChainReport(checked: checked, head: previous,
                                            broken: (expectedSeq, "missing: events \(expectedSeq)…\(event.seq - 1) were removed"))
                }
                let hash = AuditChain.link(previous: previous, seq: event.seq, content: event.content)
                if hash != event.hash {
                    return AuditChainReport(checked: checked, head: previous,
                                            broken: (event.seq, "its content or hash was changed after it was recorded"))
                }
                previous = hash
                expectedSeq += 1
                checked += 1
            }
            progress(checked)
        }
        // The writer's own record of the head: a removed tail shows here.
        let recorded = try await db.query("SELECT seq, hash FROM audit_head WHERE id = 1", [])
        if let row = recorded.first, let seq = row[0].integer, let hash = row[1].text, seq != anchor.seq + checked || hash != previous {
            return AuditChainReport(checked: checked, head: previous,
                                    broken: (anchor.seq + checked + 1, "missing: the chain head says \(seq) events ending in \(hash.prefix(12))…"))
        }
        return AuditChainReport(checked: checked, head: expectedSeq == 1 ? nil : previous, broken: nil, archivedThrough: anchor.seq)
    }
}
