import FHIRModel
import Logging
import NIOCore
import PostgresNIO
import Store

/// Writes a commit's rows in one statement, one fixed part per table: the values travel as arrays
/// and `unnest` turns them into rows, so statement text does not grow with the batch. Arrays cannot
/// hold NULL here, so nullable text travels as '' and nullable content as an empty bytea
/// (FHIR forbids empty strings, and stored content is never empty) and `NULLIF` restores NULL.
enum PostgresRows {
    /// Writes the rows of `pending` in one statement (one round trip: each table's insert, and the
    /// deletion of replaced index rows, is a data-modifying `WITH` part of it).
    static func insert(_ pending: PendingRows, on connection: PostgresConnection, logger: Logger) async throws {
        guard !pending.isEmpty else { return }
        var statement = Statement()
        var history = Columns(7)
        for h in pending.history {
            history.add(h.hid, h.rid, h.version, Int(h.time), h.method,
                        ByteBuffer(bytes: h.content ?? []), h.compartment ?? "")
        }
        statement.add(history) { p in """
            INSERT INTO resource_history (hid, rid, version, last_updated, method, content, compartment)
            SELECT h, r, v, t, m, NULLIF(c, ''::bytea), NULLIF(k, '')
            FROM unnest(\(p(1))::int8[], \(p(2))::int8[], \(p(3))::int8[], \(p(4))::int8[], \(p(5))::text[], \(p(6))::bytea[], \(p(7))::text[])
                AS u(h, r, v, t, m, c, k)
            """ }
        // A unit may write one resource twice; the row keeps its last state.
        var last: [Int: PendingRows.Resource] = [:]
        for r in pending.resources { last[r.rid] = r }
        var resources = Columns(10)
        for r in last.values.sorted(by: { $0.rid < $1.rid }) {
            resources.add(r.rid, r.key.type, r.key.id, r.version, Int(r.time), r.deleted ? 1 : 0, r.hid, r.compartment ?? "",
                          r.facility ?? "", r.sensitive ?? "")
        }
        statement.add(resources) { p in """
            INSERT INTO resource (rid, type, id, version, last_updated, deleted, hid, compartment, facility, sensitive)
            SELECT r, ty, i, v, t, d::int2, h, NULLIF(k, ''), NULLIF(f, ''), NULLIF(s, '')
            FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::int8[], \(p(5))::int8[], \(p(6))::int8[], \(p(7))::int8[],
                        \(p(8))::text[], \(p(9))::text[], \(p(10))::text[])
                AS u(r, ty, i, v, t, d, h, k, f, s)
            ON CONFLICT (rid) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
                deleted = excluded.deleted, hid = excluded.hid, compartment = excluded.compartment,
                facility = excluded.facility, sensitive = excluded.sensitive
            """ }
        addIndex(pending.index, clearing: Array(pending.clearIndex), to: &statement)
        try await statement.run(on: connection, logger: logger)
    }

    static let indexTables = ["idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri", "idx_quantity", "idx_consent",
                              "idx_concept", "idx_closure"]

    /// Deletes the index rows of `clearing`, then inserts `index`, and sets the access columns the
    /// new rows imply (ADR 016; a Patient is its own compartment).
    static func replaceIndex(_ index: [Int: (type: String, entries: [IndexEntry])], clearing: [Int],
                             on connection: PostgresConnection, logger: Logger) async throws {
        var statement = Statement()
        addIndex(index, clearing: clearing, to: &statement)
        var columns = Columns(4)
        for (rid, item) in index {
            let access = AccessColumns(key: ResourceKey(item.type, ""), index: item.entries)
            columns.add(rid, access.facility ?? "", access.compartment ?? "", access.sensitive ?? "")
        }
        statement.add(columns) { p in """
            UPDATE resource SET facility = NULLIF(u.f, ''), sensitive = NULLIF(u.s, ''),
                compartment = CASE WHEN resource.type = 'Patient' THEN resource.id ELSE NULLIF(u.k, '') END
            FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[]) AS u(r, f, k, s) WHERE resource.rid = u.r
            """ }
        try await statement.run(on: connection, logger: logger)
    }

    /// The deletion of the index rows of `clearing` and the insertion of `index`, as parts of
    /// `statement`. The parts of one statement share its snapshot: a deletion removes only rows that
    /// existed before it, never those the same statement inserts.
    private static func addIndex(_ index: [Int: (type: String, entries: [IndexEntry])], clearing: [Int],
                                 to statement: inout Statement) {
        if !clearing.isEmpty {
            var rids = Columns(1)
            for rid in clearing { rids.add(rid) }
            let p = statement.bind(rids)
            for table in indexTables { statement.part("DELETE FROM \(table) WHERE rid = ANY(\(p(1))::int8[])") }
        }
        var token = Columns(5), string = Columns(5), reference = Columns(6), date = Columns(5), uri = Columns(4), quantity = Columns(6)
        var consent = Columns(11), concept = Columns(8), closure = Columns(6)
        for (rid, item) in index {
            for e in item.entries {
                switch e.value {
                case .token(let system, let code):
                    token.add(rid, item.type, e.parameter, system ?? "", code)
                case .string(let s, let exact):
                    string.add(rid, item.type, e.parameter, s, exact)
                case .reference(let type, let id, let url):
                    reference.add(rid, item.type, e.parameter, type ?? "", id ?? "", url ?? "")
                case .date(let low, let high):
                    date.add(rid, item.type, e.parameter, Int(low), Int(high))
                case .uri(let u):
                    uri.add(rid, item.type, e.parameter, u)
                case .number(let n):
                    quantity.add(rid, item.type, e.parameter, n, "", "")
                case .quantity(let value, let system, let code):
                    quantity.add(rid, item.type, e.parameter, value, system ?? "", code ?? "")
                case .consent(let c):
                    consent.add(rid, item.type, e.parameter, c.patient, c.facility, c.resourceClass, c.label, c.permit ? 1 : -1, c.rank,
                                Int(c.low), Int(c.high))
                case .concept(let c):
                    concept.add(rid, item.type, e.parameter, c.system, c.version, c.code, c.display ?? "", c.detail)
                case .closure(let system, let ancestor, let code):
                    closure.add(rid, item.type, e.parameter, system, ancestor, code)
                }
            }
        }
        statement.add(token) { p in """
            INSERT INTO idx_token (rid, type, param, system, code)
            SELECT r, t, p, NULLIF(s, ''), c FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[], \(p(5))::text[]) AS u(r, t, p, s, c)
            """ }
        statement.add(string) { p in """
            INSERT INTO idx_string (rid, type, param, value, exact)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[], \(p(5))::text[])
            """ }
        statement.add(reference) { p in """
            INSERT INTO idx_reference (rid, type, param, target_type, target_id, url)
            SELECT r, t, p, NULLIF(tt, ''), NULLIF(ti, ''), NULLIF(u, '')
            FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[], \(p(5))::text[], \(p(6))::text[]) AS u(r, t, p, tt, ti, u)
            """ }
        statement.add(date) { p in """
            INSERT INTO idx_date (rid, type, param, low, high)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::int8[], \(p(5))::int8[])
            """ }
        statement.add(uri) { p in """
            INSERT INTO idx_uri (rid, type, param, value)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[])
            """ }
        statement.add(quantity) { p in """
            INSERT INTO idx_quantity (rid, type, param, value, system, code)
            SELECT r, t, p, v, NULLIF(s, ''), NULLIF(c, '')
            FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::float8[], \(p(5))::text[], \(p(6))::text[]) AS u(r, t, p, v, s, c)
            """ }
        statement.add(consent) { p in """
            INSERT INTO idx_consent (rid, type, param, patient, facility, class, label, verdict, rank, low, high)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[], \(p(5))::text[], \(p(6))::text[],
                                 \(p(7))::text[], \(p(8))::int4[], \(p(9))::int4[], \(p(10))::int8[], \(p(11))::int8[])
            """ }
        statement.add(concept) { p in """
            INSERT INTO idx_concept (rid, type, param, system, version, code, display, detail)
            SELECT r, t, p, s, v, c, NULLIF(d, ''), x FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[],
                                 \(p(5))::text[], \(p(6))::text[], \(p(7))::text[], \(p(8))::text[]) AS u(r, t, p, s, v, c, d, x)
            """ }
        statement.add(closure) { p in """
            INSERT INTO idx_closure (rid, type, param, system, ancestor, code)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::text[], \(p(3))::text[], \(p(4))::text[], \(p(5))::text[], \(p(6))::text[])
            """ }
    }

    /// The audit events of a unit after `head` (locked by the caller), with their patients and the
    /// new head, in one statement.
    static func appendAudit(_ events: [StoredAuditEvent], patients: [[String]], head: (seq: Int, hash: String),
                            on connection: PostgresConnection, logger: Logger) async throws {
        var statement = Statement()
        var rows = Columns(4), links = Columns(2)
        for (event, eventPatients) in zip(events, patients) {
            rows.add(event.seq, Int(event.recorded), ByteBuffer(bytes: event.content), event.hash)
            for patient in eventPatients { links.add(patient, event.seq) }
        }
        statement.add(rows) { p in """
            INSERT INTO audit_event (seq, recorded, content, hash)
            SELECT * FROM unnest(\(p(1))::int8[], \(p(2))::int8[], \(p(3))::bytea[], \(p(4))::text[])
            """ }
        statement.add(links) { p in """
            INSERT INTO audit_patient (patient, seq) SELECT * FROM unnest(\(p(1))::text[], \(p(2))::int8[]) ON CONFLICT DO NOTHING
            """ }
        let seq = statement.bind(head.seq), hash = statement.bind(head.hash)
        statement.part("UPDATE audit_head SET seq = \(seq), hash = \(hash) WHERE id = 1")
        try await statement.run(on: connection, logger: logger)
    }

    /// One statement made of data-modifying `WITH` parts, each run exactly once; parameters are
    /// numbered across the parts.
    struct Statement {
        private var parts: [String] = []
        private var binds = PostgresBindings()
        private var count = 0

        /// Adds a part over `columns` (nothing when they hold no row); `sql` gets the name of the
        /// part's n-th parameter (from 1), one array per column.
        mutating func add(_ columns: Columns, _ sql: (_ parameter: (Int) -> String) -> String) {
            guard columns.rows > 0 else { return }
            let parameter = bind(columns)
            part(sql(parameter))
        }

        /// Binds `columns` for parts to come; the name of their n-th parameter (from 1).
        mutating func bind(_ columns: Columns) -> (Int) -> String {
            let base = count
            columns.bind(into: &binds)
            count += columns.width
            return { "$\(base + $0)" }
        }

        /// Binds one value for parts to come; its parameter's name.
        mutating func bind(_ value: some PostgresNonThrowingEncodable & Sendable) -> String {
            binds.append(value)
            count += 1
            return "$\(count)"
        }

        mutating func part(_ sql: String) {
            parts.append("p\(parts.count) AS (" + sql + ")")
        }

        func run(on connection: PostgresConnection, logger: Logger) async throws {
            guard !parts.isEmpty else { return }
            try await connection.query(PostgresQuery(unsafeSQL: "WITH " + parts.joined(separator: ",\n") + " SELECT 1", binds: binds),
                                       logger: logger)
        }
    }

    /// Column-wise values of one table's rows, bound as one array per column.
    struct Columns {
        private var ints: [Int: [Int]] = [:]
        private var texts: [Int: [String]] = [:]
        private var doubles: [Int: [Double]] = [:]
        private var blobs: [Int: [ByteBuffer]] = [:]
        let width: Int
        private(set) var rows = 0

        init(_ width: Int) { self.width = width }

        mutating func add(_ values: any Sendable...) {
            precondition(values.count == width)
            for (i, v) in values.enumerated() {
                switch v {
                case let v as Int: ints[i, default: []].append(v)
                case let v as String: texts[i, default: []].append(v)
                case let v as Double: doubles[i, default: []].append(v)
                case let v as ByteBuffer: blobs[i, default: []].append(v)
                default: preconditionFailure("unsupported column value \(type(of: v))")
                }
            }
            rows += 1
        }

        /// Binds one array per column.
        func bind(into b: inout PostgresBindings) {
            for i in 0..<width {
                if let v = ints[i] { b.append(v) } else if let v = texts[i] { b.append(v) }
                else if let v = doubles[i] { b.append(v) } else if let v = blobs[i] { b.append(v) }
            }
        }
    }
}
