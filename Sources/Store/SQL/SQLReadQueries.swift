import FHIRModel
import NIOCore

/// The read side of the store (search, history, compartment, includes, counts), written once
/// for every SQL backend over the shared schema. Each backend supplies an executor: SQLite its
/// reader connections, PostgreSQL its pool (or a read replica).
package struct SQLReadQueries: Sendable {
    package let db: any SQLExecutor
    let search: SearchSQL

    package init(_ db: any SQLExecutor) {
        self.db = db
        self.search = SearchSQL(db.dialect)
    }

    package static let recordColumns = "r.type, r.id, h.version, h.last_updated, h.method, h.content"

    /// A record from the six `recordColumns`, starting at `offset`.
    package static func record(_ c: [SQLValue], offset: Int = 0) -> ResourceRecord? {
        guard c.count >= offset + 6, let type = c[offset].text, let id = c[offset + 1].text,
              let version = c[offset + 2].integer, let time = c[offset + 3].integer, let method = c[offset + 4].text else { return nil }
        let content = c[offset + 5].blob
        return ResourceRecord(key: ResourceKey(type, id), version: version, lastUpdated: Int64(time),
                              deleted: content == nil, method: method, content: content)
    }

    /// A change from a `position, type, id, version, last_updated, deleted` row.
    package static func change(_ row: [SQLValue]) -> ResourceChange? {
        guard row.count >= 6, let type = row[1].text, let id = row[2].text, let version = row[3].integer,
              let time = row[4].integer, let deleted = row[5].integer else { return nil }
        return ResourceChange(key: ResourceKey(type, id), version: version, lastUpdated: Int64(time), deleted: deleted != 0)
    }

    package func scalar(_ sql: String, _ binds: [SQLValue] = []) async throws -> Int {
        try await db.query(sql, binds).first?.first?.integer ?? 0
    }

    /// The highest row id a page may show: fixed by the first page, carried by the next ones.
    func snapshotRid(_ page: PageRequest) async throws -> Int {
        if let s = page.snapshot { return s }
        return try await scalar("SELECT COALESCE(MAX(rid), 0) FROM resource")
    }

    /// The current versions of several resources in a few queries (keys not stored are absent).
    package func records(keys: [ResourceKey]) async throws -> [ResourceKey: ResourceRecord] {
        let keys = Array(Set(keys)).filter(\.isStorable)
        var found: [ResourceKey: ResourceRecord] = [:]
        for chunk in keys.chunked(200) {
            let sql = "SELECT \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE "
                + chunk.map { _ in "(r.type = ? AND r.id = ?)" }.joined(separator: " OR ")
            for row in try await db.query(sql, chunk.flatMap { [SQLValue.text($0.type), .text($0.id)] }) {
                if let record = Self.record(row) { found[record.key] = record }
            }
        }
        return found
    }

    package func history(_ query: HistoryQuery) async throws -> HistoryPage {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let type = query.type { conditions.append("r.type = ?"); binds.append(.text(type)) }
        if let id = query.id { conditions.append("r.id = ?"); binds.append(.text(id)) }
        if let since = query.since { conditions.append("h.last_updated >= ?"); binds.append(.integer(Int(since))) }
        if let at = query.at {
            // Versions current at some time in [low, high): made before high and not superseded by low.
            conditions.append("h.last_updated < ?")
            binds.append(.integer(Int(at.high)))
            conditions.append("NOT EXISTS (SELECT 1 FROM resource_history n WHERE n.rid = h.rid AND n.version > h.version AND n.last_updated <= ?)")
            binds.append(.integer(Int(at.low)))
        }
        var snapshot = query.snapshot ?? 0
        if query.snapshot == nil { snapshot = Int64(try await scalar("SELECT COALESCE(MAX(last_updated), 0) FROM resource_history")) }
        conditions.append("h.last_updated <= ?")
        binds.append(.integer(Int(snapshot)))
        let whereClause = " WHERE " + conditions.joined(separator: " AND ")
        let from = " FROM resource_history h JOIN resource r ON r.rid = h.rid"
        let total = try await scalar("SELECT COUNT(*)" + from + whereClause, binds)
        let rows = try await db.query(
            "SELECT \(Self.recordColumns)" + from + whereClause + " ORDER BY h.last_updated DESC, h.hid DESC LIMIT ? OFFSET ?",
            binds + [.integer(query.count), .integer(query.offset)])
        return HistoryPage(records: rows.compactMap { Self.record($0) }, total: total, snapshot: snapshot)
    }

    /// Keys of current resources matching a conditional query.
    package func keys(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey] {
        try await ConditionalMatchSQL(db.dialect, query, limit: limit).keys(db)
    }

    package func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage {
        let (condition, binds) = search.whereClause(query)
        let snapshot = try await snapshotRid(page)
        var sql = "SELECT r.rid, \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE "
            + condition + " AND r.rid <= ?"
        var allBinds = binds + [.integer(snapshot)]
        let keyset = query.sort.isEmpty
        if keyset, let after = page.after {
            sql += " AND r.rid > ?"
            allBinds.append(.integer(after))
        }
        var order: [String] = []
        for key in query.sort {
            let (expression, b) = search.sortExpression(key, type: query.type)
            order.append(expression)
            allBinds.append(contentsOf: b)
        }
        order.append("r.rid")
        sql += " ORDER BY " + order.joined(separator: ", ") + " LIMIT ? OFFSET ?"
        allBinds.append(contentsOf: [.integer(page.count + 1), .integer(keyset ? 0 : page.offset)])
        let rows = page.count == 0 ? [] : try await db.query(sql, allBinds)
        let (records, lastRid) = Self.pageRecords(rows, count: page.count, after: page.after)
        var total: Int?
        if page.withTotal {
            if let (groupSQL, groupBinds) = search.singleValueCount(query, snapshot: snapshot) {
                let groups = try await db.query(groupSQL, groupBinds)
                if groups.count <= 1 { total = groups.first?[1].integer ?? 0 }
            }
            if total == nil {
                let (countSQL, countBinds) = search.indexOnlyCount(query, snapshot: snapshot)
                    ?? ("SELECT COUNT(*) FROM resource r WHERE " + condition + " AND r.rid <= ?", binds + [.integer(snapshot)])
                total = try await scalar(countSQL, countBinds)
            }
        }
        var next: PageRequest?
        if rows.count > page.count {
            next = PageRequest(count: page.count, offset: keyset ? 0 : page.offset + page.count,
                               after: keyset ? lastRid : nil, snapshot: snapshot, withTotal: page.withTotal)
        }
        return SearchPage(records: records, total: total, next: next)
    }

    /// Records of `rid, recordColumns` rows (at most `count`) and the last row id among them.
    static func pageRecords(_ rows: [[SQLValue]], count: Int, after: Int?) -> ([ResourceRecord], Int) {
        var records: [ResourceRecord] = []
        var lastRid = after ?? 0
        for row in rows.prefix(count) {
            lastRid = row[0].integer ?? lastRid
            if let record = record(row, offset: 1) { records.append(record) }
        }
        return (records, lastRid)
    }

    package func compartment(of patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest,
                             scope: ReadScope) async throws -> SearchPage {
        let snapshot = try await snapshotRid(page)
        var condition: String
        var binds: [SQLValue]
        if patients.count == 1, let patient = patients.first, patient.id.isEmpty {
            condition = "r.deleted = 0 AND r.rid <= ? AND (r.type = ? OR r.rid IN (SELECT rid FROM idx_reference WHERE target_type = ?))"
            binds = [.integer(snapshot), .text(patient.type), .text(patient.type)]
        } else {
            // One index lookup per patient: references to it, and its own row.
            let parts = patients.map { _ in
                "SELECT rid FROM idx_reference WHERE target_id = ? AND target_type = ? UNION ALL SELECT rid FROM resource WHERE type = ? AND id = ?"
            }
            condition = "r.deleted = 0 AND r.rid <= ? AND r.rid IN (" + (parts.isEmpty ? "SELECT NULL" : parts.joined(separator: " UNION ALL ")) + ")"
            binds = [.integer(snapshot)] + patients.flatMap { [SQLValue.text($0.id), .text($0.type), .text($0.type), .text($0.id)] }
        }
        if let types, !types.isEmpty {
            condition += " AND r.type IN (" + Array(repeating: "?", count: types.count).joined(separator: ",") + ")"
            binds.append(contentsOf: types.map { .text($0) })
        }
        if let since {
            condition += " AND r.last_updated >= ?"
            binds.append(.integer(Int(since)))
        }
        if let (access, accessBinds) = AccessSQL.condition(scope, .row("r"), correlated: true) {
            condition += " AND " + access
            binds.append(contentsOf: accessBinds)
        }
        var pageCondition = condition
        var pageBinds = binds
        if let after = page.after {
            pageCondition += " AND r.rid > ?"
            pageBinds.append(.integer(after))
        }
        let rows = try await db.query(
            "SELECT r.rid, \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE " + pageCondition
                + " ORDER BY r.rid LIMIT ?", pageBinds + [.integer(page.count + 1)])
        let (records, lastRid) = Self.pageRecords(rows, count: page.count, after: page.after)
        var total: Int?
        if page.withTotal {
            total = try await scalar("SELECT COUNT(*) FROM resource r WHERE " + condition, binds)
        }
        let next = rows.count > page.count
            ? PageRequest(count: page.count, after: lastRid, snapshot: snapshot, withTotal: page.withTotal) : nil
        return SearchPage(records: records, total: total, next: next)
    }

    package func resources(of type: String, withToken parameter: String, codes: [String], limitPerCode: Int) async throws -> TokenLookup {
        var result = TokenLookup()
        for chunk in Array(Set(codes)).chunked(500) {
            // Counts first, from the index alone: a code shared by thousands costs no row reads.
            let list = "(" + Array(repeating: "?", count: chunk.count).joined(separator: ",") + ")"
            let binds: [SQLValue] = [.text(type), .text(parameter)] + chunk.map { .text($0) }
            var wanted: [String] = []
            for row in try await db.query("SELECT code, COUNT(*) FROM idx_token WHERE type = ? AND param = ? AND code IN " + list
                                          + " GROUP BY code", binds) {
                guard let code = row[0].text, let n = row[1].integer else { continue }
                if n > limitPerCode { result.overLimit.insert(code) } else { wanted.append(code) }
            }
            guard !wanted.isEmpty else { continue }
            let sql = "SELECT code, rid FROM idx_token WHERE type = ? AND param = ?"
                + " AND code IN (" + Array(repeating: "?", count: wanted.count).joined(separator: ",") + ")"
            for row in try await db.query(sql, [.text(type), .text(parameter)] + wanted.map { .text($0) }) {
                guard let code = row[0].text, let rid = row[1].integer else { continue }
                result.matches[code, default: []].append(rid)
            }
        }
        return result
    }

    package func keys(ofRecords records: [Int]) async throws -> [Int: ResourceKey] {
        var result: [Int: ResourceKey] = [:]
        for chunk in Array(Set(records)).chunked(500) {
            let sql = "SELECT rid, type, id FROM resource WHERE deleted = 0 AND rid IN ("
                + Array(repeating: "?", count: chunk.count).joined(separator: ",") + ")"
            for row in try await db.query(sql, chunk.map { .integer($0) }) {
                guard let rid = row[0].integer, let t = row[1].text, let id = row[2].text else { continue }
                result[rid] = ResourceKey(t, id)
            }
        }
        return result
    }

    package func resources(of type: String, referencing targets: [ResourceKey], parameter: String) async throws -> [ResourceRecord] {
        var result: [ResourceRecord] = []
        var seen = Set<ResourceKey>()
        for (targetType, group) in Dictionary(grouping: targets, by: \.type) {
            for chunk in Array(Set(group.map(\.id))).chunked(500) {
                let sql = "SELECT \(Self.recordColumns) FROM resource r JOIN resource_history h ON h.hid = r.hid"
                    + " WHERE r.deleted = 0 AND r.rid IN (SELECT rid FROM idx_reference WHERE target_id IN ("
                    + Array(repeating: "?", count: chunk.count).joined(separator: ",") + ") AND target_type = ? AND param = ? AND type = ?)"
                let binds = chunk.map { SQLValue.text($0) } + [.text(targetType), .text(parameter), .text(type)]
                for row in try await db.query(sql, binds) {
                    if let record = Self.record(row), seen.insert(record.key).inserted { result.append(record) }
                }
            }
        }
        return result
    }

    package func include(from sources: [ResourceKey], parameter: String?, targetType: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        var result: [ResourceRecord] = []
        for chunk in sources.chunked(400) {
            var sql = "SELECT DISTINCT \(Self.recordColumns) FROM idx_reference i"
                + " JOIN resource r ON r.type = i.target_type AND r.id = i.target_id JOIN resource_history h ON h.hid = r.hid"
                + " WHERE r.deleted = 0 AND i.rid IN (SELECT rid FROM resource WHERE "
                + Array(repeating: "(type = ? AND id = ?)", count: chunk.count).joined(separator: " OR ") + ")"
            var binds = chunk.flatMap { [SQLValue.text($0.type), .text($0.id)] }
            if let parameter { sql += " AND i.param = ?"; binds.append(.text(parameter)) }
            if let targetType { sql += " AND i.target_type = ?"; binds.append(.text(targetType)) }
            if let (access, accessBinds) = AccessSQL.condition(scope, .row("r"), correlated: true) { sql += " AND " + access; binds += accessBinds }
            result.append(contentsOf: try await db.query(sql, binds).compactMap { Self.record($0) })
        }
        return result
    }

    package func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?, scope: ReadScope) async throws -> [ResourceRecord] {
        var result: [ResourceRecord] = []
        for chunk in targets.chunked(400) {
            var sql = "SELECT DISTINCT \(Self.recordColumns) FROM idx_reference i"
                + " JOIN resource r ON r.rid = i.rid JOIN resource_history h ON h.hid = r.hid"
                + " WHERE r.deleted = 0 AND i.type = ? AND ("
                + Array(repeating: "(i.target_id = ? AND i.target_type = ?)", count: chunk.count).joined(separator: " OR ") + ")"
            var binds: [SQLValue] = [.text(sourceType)] + chunk.flatMap { [SQLValue.text($0.id), .text($0.type)] }
            if let parameter { sql += " AND i.param = ?"; binds.append(.text(parameter)) }
            if let (access, accessBinds) = AccessSQL.condition(scope, .row("r"), correlated: true) { sql += " AND " + access; binds += accessBinds }
            result.append(contentsOf: try await db.query(sql, binds).compactMap { Self.record($0) })
        }
        return result
    }

    /// Which of `keys` (current, not deleted) the scope lets its reader see: the decision on
    /// reads by id, made by the same SQL as every search (ADR 016).
    package func readable(_ keys: [ResourceKey], scope: ReadScope) async throws -> Set<ResourceKey> {
        let keys = Array(Set(keys)).filter(\.isStorable)
        guard let (access, accessBinds) = AccessSQL.condition(scope, .row("r"), correlated: true) else { return Set(keys) }
        var found = Set<ResourceKey>()
        for chunk in keys.chunked(100) {
            let sql = "SELECT r.type, r.id FROM resource r WHERE r.deleted = 0 AND ("
                + chunk.map { _ in "(r.type = ? AND r.id = ?)" }.joined(separator: " OR ") + ") AND " + access
            for row in try await db.query(sql, chunk.flatMap { [SQLValue.text($0.type), .text($0.id)] } + accessBinds) {
                if let t = row[0].text, let id = row[1].text { found.insert(ResourceKey(t, id)) }
            }
        }
        return found
    }

    /// Whether the scope lets its reader see a version described by `subject` (an older version:
    /// `vread`, history), by the same SQL.
    package func decide(_ subject: AccessSubject, scope: ReadScope) async throws -> Bool {
        guard let (access, binds) = AccessSQL.condition(scope, .values(subject), correlated: true) else { return true }
        return try await scalar("SELECT CASE WHEN " + access + " THEN 1 ELSE 0 END", binds) == 1
    }

    package func concepts(system: String, version: String?, _ query: ConceptQuery, after: String?, limit: Int) async throws -> [ConceptEntry] {
        var sql = "SELECT c.system, c.version, c.code, c.display, c.detail FROM idx_concept c"
        var binds: [SQLValue] = []
        switch query {
        case .codes(let codes):
            guard !codes.isEmpty else { return [] }
            if codes.count > 1000 {
                var found: [ConceptEntry] = []
                for chunk in codes.chunked(1000) {
                    found += try await concepts(system: system, version: version, .codes(Array(chunk)), after: after, limit: limit)
                }
                return found.sorted { ($0.code, $0.version) < ($1.code, $1.version) }.prefix(limit).map { $0 }
            }
            sql += " WHERE c.system = ? AND c.code IN (" + Array(repeating: "?", count: codes.count).joined(separator: ", ") + ")"
            binds = [.text(system)] + codes.map { .text($0) }
        case .below(let code):
            sql += " JOIN idx_closure t ON t.rid = c.rid AND t.code = c.code WHERE t.system = ? AND t.ancestor = ? AND c.system = ?"
            binds = [.text(system), .text(code), .text(system)]
        case .above(let code):
            sql += " JOIN idx_closure t ON t.rid = c.rid AND t.ancestor = c.code WHERE t.system = ? AND t.code = ? AND c.system = ?"
            binds = [.text(system), .text(code), .text(system)]
        case .all:
            sql += " WHERE c.system = ? AND c.code <> ''"   // "" describes the code system (ConceptIndex)
            binds = [.text(system)]
        }
        if let version { sql += " AND c.version = ?"; binds.append(.text(version)) }
        if let after { sql += " AND c.code > ?"; binds.append(.text(after)) }
        sql += " ORDER BY c.code, c.version LIMIT ?"
        binds.append(.integer(limit))
        return try await db.query(sql, binds).compactMap { row in
            guard let system = row[0].text, let version = row[1].text, let code = row[2].text, let detail = row[4].text else { return nil }
            return ConceptEntry(system: system, version: version, code: code, display: row[3].text, detail: detail)
        }
    }

    package func codeCounts(facility: String, systems: [String], limit: Int) async throws -> [CodeCount] {
        guard !systems.isEmpty else { return [] }
        let sql = "SELECT t.system, t.code, COUNT(DISTINCT t.rid) FROM idx_token t JOIN resource r ON r.rid = t.rid"
            + " WHERE r.facility = ? AND r.deleted = 0 AND t.system IN (" + Array(repeating: "?", count: systems.count).joined(separator: ", ") + ")"
            + " GROUP BY t.system, t.code ORDER BY 3 DESC, t.system, t.code LIMIT ?"
        let binds: [SQLValue] = [.text(facility)] + systems.map { .text($0) } + [.integer(limit)]
        return try await db.query(sql, binds).compactMap { row in
            guard let system = row[0].text, let code = row[1].text, let n = row[2].integer else { return nil }
            return CodeCount(system: system, code: code, resources: n)
        }
    }

    package func resourceCounts() async throws -> [String: Int] {
        var result: [String: Int] = [:]
        for row in try await db.query("SELECT type, COUNT(*) FROM resource WHERE deleted = 0 GROUP BY type", []) {
            if let t = row[0].text, let n = row[1].integer { result[t] = n }
        }
        return result
    }

    /// Rebuilds the search index of every current resource (of `type`, when given) from its stored
    /// content in batches of 1,000: `replace` writes one batch's rows (rid → type and entries).
    package func reindex(type: String?, extract: @Sendable (JSONObject, String) -> [IndexEntry],
                         replace: ([Int: (type: String, entries: [IndexEntry])]) async throws -> Void,
                         progress: @Sendable (Int, Int) -> Void) async throws -> Int {
        let filter = type == nil ? "" : " AND r.type = ?"
        let typeBind: [SQLValue] = type.map { [.text($0)] } ?? []
        let total = try await scalar("SELECT COUNT(*) FROM resource r WHERE r.deleted = 0" + filter, typeBind)
        var after = 0
        var done = 0
        while true {
            let rows = try await db.query(
                "SELECT r.rid, r.type, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid"
                    + " WHERE r.deleted = 0 AND r.rid > ?" + filter + " ORDER BY r.rid LIMIT 1000",
                [.integer(after)] + typeBind)
            if rows.isEmpty { break }
            var index: [Int: (type: String, entries: [IndexEntry])] = [:]
            for row in rows {
                guard let rid = row[0].integer, let t = row[1].text, let content = row[2].blob else { continue }
                after = rid
                guard case .object(let o)? = try? JSONParser.parse(content.readableBytesView) else { continue }
                index[rid] = (t, extract(o, t))
            }
            try await replace(index)
            done += rows.count
            progress(done, total)
        }
        return done
    }
}

extension Array {
    package func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
