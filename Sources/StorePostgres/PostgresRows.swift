import FHIRModel
import Logging
import NIOCore
import PostgresNIO
import Store

/// Writes a commit's rows with one fixed statement per table: the values travel as arrays and
/// `unnest` turns them into rows, so statement text does not grow with the batch. Arrays cannot
/// hold NULL here, so nullable text travels as '' and nullable content as an empty bytea
/// (FHIR forbids empty strings, and stored content is never empty) and `NULLIF` restores NULL.
enum PostgresRows {
    static func insert(_ pending: PendingRows, on connection: PostgresConnection, logger: Logger) async throws {
        guard !pending.isEmpty else { return }
        var history = Columns(7)
        for h in pending.history {
            history.add(h.hid, h.rid, h.version, Int(h.time), h.method,
                        ByteBuffer(bytes: h.content ?? []), h.compartment ?? "")
        }
        try await history.run("""
            INSERT INTO resource_history (hid, rid, version, last_updated, method, content, compartment)
            SELECT h, r, v, t, m, NULLIF(c, ''::bytea), NULLIF(k, '')
            FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::bytea[], $7::text[]) AS u(h, r, v, t, m, c, k)
            """, on: connection, logger: logger)
        // A unit may write one resource twice; the row keeps its last state.
        var last: [Int: PendingRows.Resource] = [:]
        for r in pending.resources { last[r.rid] = r }
        var resources = Columns(8)
        for r in last.values.sorted(by: { $0.rid < $1.rid }) {
            resources.add(r.rid, r.key.type, r.key.id, r.version, Int(r.time), r.deleted ? 1 : 0, r.hid, r.compartment ?? "")
        }
        try await resources.run("""
            INSERT INTO resource (rid, type, id, version, last_updated, deleted, hid, compartment)
            SELECT r, ty, i, v, t, d::int2, h, NULLIF(k, '')
            FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::text[])
                AS u(r, ty, i, v, t, d, h, k)
            ON CONFLICT (rid) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
                deleted = excluded.deleted, hid = excluded.hid, compartment = excluded.compartment
            """, on: connection, logger: logger)
        try await replaceIndex(pending.index, clearing: Array(pending.clearIndex), on: connection, logger: logger)
    }

    static let indexTables = ["idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri", "idx_quantity"]

    /// Deletes the index rows of `clearing`, then inserts `index`.
    static func replaceIndex(_ index: [Int: (type: String, entries: [IndexEntry])], clearing: [Int],
                             on connection: PostgresConnection, logger: Logger) async throws {
        if !clearing.isEmpty {
            for table in indexTables {
                try await connection.query(PostgresQuery(unsafeSQL: "DELETE FROM \(table) WHERE rid = ANY($1::int8[])",
                                                         binds: bindings(clearing)), logger: logger)
            }
        }
        var token = Columns(5), string = Columns(5), reference = Columns(6), date = Columns(5), uri = Columns(4), quantity = Columns(6)
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
                }
            }
        }
        try await token.run("""
            INSERT INTO idx_token (rid, type, param, system, code)
            SELECT r, t, p, NULLIF(s, ''), c FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(r, t, p, s, c)
            """, on: connection, logger: logger)
        try await string.run("""
            INSERT INTO idx_string (rid, type, param, value, exact)
            SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[])
            """, on: connection, logger: logger)
        try await reference.run("""
            INSERT INTO idx_reference (rid, type, param, target_type, target_id, url)
            SELECT r, t, p, NULLIF(tt, ''), NULLIF(ti, ''), NULLIF(u, '')
            FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(r, t, p, tt, ti, u)
            """, on: connection, logger: logger)
        try await date.run("""
            INSERT INTO idx_date (rid, type, param, low, high)
            SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[])
            """, on: connection, logger: logger)
        try await uri.run("""
            INSERT INTO idx_uri (rid, type, param, value)
            SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[])
            """, on: connection, logger: logger)
        try await quantity.run("""
            INSERT INTO idx_quantity (rid, type, param, value, system, code)
            SELECT r, t, p, v, NULLIF(s, ''), NULLIF(c, '')
            FROM unnest($1::int8[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[]) AS u(r, t, p, v, s, c)
            """, on: connection, logger: logger)
    }

    static func bindings(_ values: [Int]) -> PostgresBindings {
        var b = PostgresBindings(capacity: 1)
        b.append(values)
        return b
    }

    /// Column-wise values of one table's rows, bound as one array per column.
    struct Columns {
        private var ints: [Int: [Int]] = [:]
        private var texts: [Int: [String]] = [:]
        private var doubles: [Int: [Double]] = [:]
        private var blobs: [Int: [ByteBuffer]] = [:]
        private let width: Int
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

        func run(_ sql: String, on connection: PostgresConnection, logger: Logger) async throws {
            guard rows > 0 else { return }
            var b = PostgresBindings(capacity: width)
            for i in 0..<width {
                if let v = ints[i] { b.append(v) } else if let v = texts[i] { b.append(v) }
                else if let v = doubles[i] { b.append(v) } else if let v = blobs[i] { b.append(v) }
            }
            try await connection.query(PostgresQuery(unsafeSQL: sql, binds: b), logger: logger)
        }
    }
}
