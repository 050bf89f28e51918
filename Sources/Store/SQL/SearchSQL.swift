/// Compiles a `SearchQuery` to SQL (SQLite and PostgreSQL share the text; `SQLDialect` holds the
/// differences). Every request value is a bound parameter; only fixed fragments of this file are
/// concatenated into statements.
package struct SearchSQL: Sendable {
    package let dialect: SQLDialect

    package init(_ dialect: SQLDialect) {
        self.dialect = dialect
    }

    /// Index table per search-parameter type.
    package static func table(for parameterType: String) -> String? {
        switch parameterType {
        case "token": return "idx_token"
        case "string": return "idx_string"
        case "reference": return "idx_reference"
        case "date": return "idx_date"
        case "uri": return "idx_uri"
        case "number", "quantity": return "idx_quantity"
        default: return nil
        }
    }

    /// `r.type = ? AND r.deleted = 0 AND ...` over `resource r`.
    package func whereClause(_ query: SearchQuery, topLevelAccess: Bool = true) -> (sql: String, binds: [SQLValue]) {
        let (sql, binds, _) = compileWhere(query, topLevelAccess: topLevelAccess)
        return (sql, binds)
    }

    /// A count that needs no row lookups: when every clause is one positive index subquery
    /// (index rows exist only for current, non-deleted versions), intersect their row ids.
    package func indexOnlyCount(_ query: SearchQuery, snapshot: Int) -> (sql: String, binds: [SQLValue])? {
        let (_, _, sets) = compileWhere(query)
        guard let sets, !sets.isEmpty else { return nil }
        let sql = "SELECT COUNT(DISTINCT rid) AS n FROM (" + sets.map(\.0).joined(separator: " INTERSECT ") + ") AS matches WHERE rid <= ?"
        return (sql, sets.flatMap(\.1) + [.integer(snapshot)])
    }

    /// A count over one token or reference value, without de-duplicating row ids: index rows
    /// are unique per resource (extraction de-duplicates), so the rows of one (system, code) or
    /// (target type, id) count resources, and within one such group the index delivers row ids in
    /// order, without a temporary B-tree. The rows come grouped by the one column the value leaves
    /// open (token system, reference target type); more than one group means a resource could be
    /// counted twice, and the caller must use `indexOnlyCount` instead.
    package func singleValueCount(_ query: SearchQuery, snapshot: Int) -> (sql: String, binds: [SQLValue])? {
        guard query.scope.isEverything, query.clauses.count == 1, let clause = query.clauses.first, !clause.negated, clause.stored.count == 1,
              clause.values.count == 1, let value = clause.values.first else { return nil }
        let table: String, group: String
        switch value {
        case .token(let system, let code) where code != nil:
            table = "idx_token"; group = system == nil ? "system" : "code"
        case .reference(let type, _):
            table = "idx_reference"; group = type == nil ? "target_type" : "target_id"
        default:
            return nil
        }
        let (condition, binds) = indexCondition(value)
        return ("SELECT \(group), COUNT(*) FROM \(table) WHERE type = ? AND param = ? AND \(condition) AND rid <= ? GROUP BY \(group)",
                [.text(query.type), .text(clause.stored[0])] + binds + [.integer(snapshot)])
    }

    /// The condition on an index row's parameter: one name, or the names a folded parameter reads.
    func param(_ names: [String]) -> (sql: String, binds: [SQLValue]) {
        names.count == 1 ? ("param = ?", [.text(names[0])])
            : ("param IN (" + Array(repeating: "?", count: names.count).joined(separator: ", ") + ")", names.map { .text($0) })
    }

    /// Search parameters that whole facilities or profiles share (`_source` is a facility's).
    /// Reference parameters whose one target has few records: a patient's, a visit's.
    static let narrowReferenceParameters: Set<String> = ["patient", "subject", "encounter", "context"]

    static let broadParameters: Set<String> = ["_source", "_tag", "_security", "_profile"]

    /// - Parameter topLevelAccess: false leaves this level's access condition to the caller
    ///   (`ConditionalMatchSQL`); chains and `_has` below keep theirs.
    package func compileWhere(_ query: SearchQuery, topLevelAccess: Bool = true)
        -> (sql: String, binds: [SQLValue], ridSets: [(String, [SQLValue])]?) {
        // With a selective index clause present, keep the planner from scanning every resource of
        // the type through the type index: `+r.type` is not indexable, so the IN lists drive.
        let hasID = query.clauses.contains { $0.parameter == "_id" }
        let driven = !hasID && query.clauses.contains { clause in
            !clause.negated && !clause.broad && clause.values.allSatisfy {
                switch $0 {
                case .missing, .id, .lastUpdated: return false
                default: return true
                }
            }
        }
        var sql = (driven ? dialect.noIndexPrefix + "r.type" : "r.type") + " = ? AND r.deleted = 0"
        var ridSets: [(String, [SQLValue])]? = []
        // Selective clauses (token, reference, uri) become IN lists, which the planner can drive
        // from; ranges (date, quantity, string prefixes) are checked per candidate through the rid
        // index (EXISTS), so a broad range is never materialised in full. Without any selective
        // clause the first positive clause drives.
        func selective(_ clause: SearchQuery.Clause) -> Bool {
            !clause.negated && !clause.broad && ["token", "reference", "uri"].contains(clause.parameterType)
                && !clause.values.contains { if case .missing = $0 { return true } else { return false } }
        }
        let drivers: Set<Int> = {
            let s = Set(query.clauses.indices.filter { selective(query.clauses[$0]) })
            // One patient's (or one visit's) records named by reference drive alone, the other
            // clauses checked per candidate: intersecting `subject=Patient/x` with `code=<a common
            // test>` read the whole code's rows up to the patient's (65 ms on a 1M-result store).
            let pinned = s.filter { i in
                let c = query.clauses[i]
                return Self.narrowReferenceParameters.contains(c.parameter) && c.values.count <= 50
                    && c.values.allSatisfy { if case .reference = $0 { return true } else { return false } }
            }
            if let first = pinned.min() { return [first] }
            // A clause every record of a facility (a label, a profile) matches is checked per
            // candidate while a narrower one drives: intersecting it read all of a facility's rows
            // on every conditional update of that facility (an HL7 result slowed as the store grew).
            let narrow = s.filter { !Self.broadParameters.contains(query.clauses[$0].parameter) }
            if !narrow.isEmpty { return narrow }
            if !s.isEmpty { return s }
            return Set(query.clauses.firstIndex { !$0.negated && !$0.broad }.map { [$0] } ?? [])
        }()
        var binds: [SQLValue] = [.text(query.type)]
        var driverSets: [(String, [SQLValue])] = []
        for (clauseIndex, clause) in query.clauses.enumerated() {
            var alternatives: [String] = []
            var ridSet: (String, [SQLValue])?
            var indexed: [String] = []   // conditions on one index row, ORed inside one subquery
            var indexedBinds: [SQLValue] = []
            var clauseBinds: [SQLValue] = []
            for match in clause.values {
                switch match {
                case .id(let id):
                    alternatives.append("r.id = ?")
                    clauseBinds.append(.text(id))
                case .lastUpdated(let prefix, let low, let high):
                    let (cond, b) = pointRange("r.last_updated", prefix, low, high)
                    alternatives.append(cond)
                    clauseBinds.append(contentsOf: b)
                case .chain(let inner):
                    let (innerWhere, innerBinds) = whereClause(inner.scoped(query.scope))
                    alternatives.append("r.rid IN (SELECT i.rid FROM idx_reference i JOIN resource t ON t.type = i.target_type AND t.id = i.target_id"
                        + " WHERE i.type = ? AND i.param = ? AND t.rid IN (SELECT r.rid FROM resource r WHERE " + innerWhere + "))")
                    clauseBinds.append(contentsOf: [.text(query.type), .text(clause.parameter)] + innerBinds)
                case .has(let inner, let parameter):
                    let (innerWhere, innerBinds) = whereClause(inner.scoped(query.scope))
                    alternatives.append("r.rid IN (SELECT t.rid FROM idx_reference i JOIN resource t ON t.type = i.target_type AND t.id = i.target_id"
                        + " WHERE i.type = ? AND i.param = ? AND t.type = ? AND i.rid IN (SELECT r.rid FROM resource r WHERE " + innerWhere + "))")
                    clauseBinds.append(contentsOf: [.text(inner.type), .text(parameter), .text(query.type)] + innerBinds)
                case .compartment(let type, let id):
                    alternatives.append("r.rid IN (SELECT rid FROM idx_reference WHERE target_id = ? AND target_type = ? AND type = ?)")
                    clauseBinds.append(contentsOf: [.text(id), .text(type), .text(query.type)])
                case .missing(let missing):
                    guard let table = Self.table(for: clause.parameterType) else { continue }
                    let p = param(clause.stored)
                    alternatives.append("r.rid \(missing ? "NOT IN" : "IN") (SELECT rid FROM \(table) WHERE type = ? AND \(p.sql))")
                    clauseBinds.append(contentsOf: [.text(query.type)] + p.binds)
                default:
                    let (cond, b) = indexCondition(match)
                    indexed.append(cond)
                    indexedBinds.append(contentsOf: b)
                }
            }
            // Many codes without a system (a list of blocking keys, `code=a,b,c,...`): one IN list,
            // not a chain of ORs (SQLite's expression depth is limited to 1,000).
            let codes = clause.values.compactMap { v -> String? in
                if case .token(nil, let code?) = v { return code } else { return nil }
            }
            if codes.count > 1 && codes.count == clause.values.count {
                indexed = ["code IN (" + Array(repeating: "?", count: codes.count).joined(separator: ",") + ")"]
                indexedBinds = codes.map { .text($0) }
            }
            // Many codes of one system (the identifiers of a message's results): an IN list on the
            // code, so that each is an index lookup; ORed pairs made SQLite read every identifier row.
            let systemCodes = clause.values.compactMap { v -> (String, String)? in
                if case .token(let system?, let code?) = v, !system.isEmpty { return (system, code) } else { return nil }
            }
            if systemCodes.count > 1 && systemCodes.count == clause.values.count {
                // One IN list per system (a value set's codes, `:in`): a few ORs, never thousands.
                var bySystem: [(String, [String])] = []
                for (system, code) in systemCodes {
                    if let i = bySystem.firstIndex(where: { $0.0 == system }) { bySystem[i].1.append(code) } else { bySystem.append((system, [code])) }
                }
                indexed = bySystem.map { "(code IN (" + Array(repeating: "?", count: $0.1.count).joined(separator: ",") + ") AND system = ?)" }
                indexedBinds = bySystem.flatMap { $0.1.map { SQLValue.text($0) } + [.text($0.0)] }
                if bySystem.count == 1 { indexed = [String(indexed[0].dropFirst().dropLast())] }
            }
            if !indexed.isEmpty, let table = Self.table(for: clause.parameterType) {
                let conditions = indexed.joined(separator: " OR ")
                let p = param(clause.stored)
                let setBinds: [SQLValue] = [.text(query.type)] + p.binds + indexedBinds
                let set = "SELECT rid FROM \(table) WHERE type = ? AND \(p.sql) AND (" + conditions + ")"
                if drivers.contains(clauseIndex) && !clause.negated && alternatives.isEmpty {
                    // Intersected with the other selective clauses below, from covering indexes.
                    driverSets.append((set, setBinds))
                    ridSets?.append((set, setBinds))
                    continue
                } else if drivers.contains(clauseIndex) {
                    alternatives.append("r.rid IN (" + set + ")")
                    clauseBinds.append(contentsOf: setBinds)
                } else {
                    alternatives.append((clause.negated ? "NOT " : "") + "EXISTS (SELECT 1 FROM \(table) WHERE rid = r.rid AND \(p.sql) AND ("
                                        + conditions + "))")
                    clauseBinds.append(contentsOf: p.binds + indexedBinds)
                }
                if !clause.negated && alternatives.count == 1 { ridSet = (set, setBinds) }
            }
            if alternatives.isEmpty { continue }
            if alternatives.count == 1, alternatives[0].hasPrefix("r.rid IN ("), alternatives[0].hasSuffix(")") {
                ridSets?.append(ridSet ?? (String(alternatives[0].dropFirst("r.rid IN (".count).dropLast()), clauseBinds))
            } else if let ridSet, alternatives.count == 1 {
                ridSets?.append(ridSet)
            } else {
                ridSets = nil
            }
            sql += " AND (" + alternatives.joined(separator: " OR ") + ")"
            binds.append(contentsOf: clauseBinds)
        }
        if !driverSets.isEmpty {
            sql += " AND r.rid IN (" + driverSets.map(\.0).joined(separator: " INTERSECT ") + ")"
            binds.append(contentsOf: driverSets.flatMap(\.1))
        }
        // The access decision, on this level's rows (ADR 016); counts then need the rows.
        if topLevelAccess, let (access, accessBinds) = AccessSQL.condition(query.scope, .row("r"), correlated: query.pinsFewPatients) {
            sql += " AND " + access
            binds.append(contentsOf: accessBinds)
            ridSets = nil
        }
        return (sql, binds, ridSets)
    }

    /// The condition on one index row for one value.
    func indexCondition(_ match: SearchQuery.Match) -> (String, [SQLValue]) {
        switch match {
        case .token(let system, let code):
            var parts: [String] = []
            var b: [SQLValue] = []
            if let code { parts.append("code = ?"); b.append(.text(code)) }
            if let system {
                if system.isEmpty { parts.append("system IS NULL") } else { parts.append("system = ?"); b.append(.text(system)) }
            }
            return (parts.isEmpty ? "1" : parts.joined(separator: " AND "), b)
        case .tokenBelow(let system, let code):
            return ("(system = ? AND (code = ? OR code IN (SELECT code FROM idx_closure WHERE system = ? AND ancestor = ?)))",
                    [.text(system), .text(code), .text(system), .text(code)])
        case .tokenAbove(let system, let code):
            return ("(system = ? AND (code = ? OR code IN (SELECT ancestor FROM idx_closure WHERE system = ? AND code = ?)))",
                    [.text(system), .text(code), .text(system), .text(code)])
        case .inValueSet:
            return ("1 = 0", [])
        case .stringPrefix(let prefix):
            return ("(value >= ? AND value < ? || " + dialect.maxCharacter + ")", [.text(prefix), .text(prefix)])
        case .stringExact(let text):
            return ("exact = ?", [.text(text)])
        case .stringContains(let text):
            return ("value LIKE ? ESCAPE '\\'", [.text("%" + likeEscaped(text) + "%")])
        case .reference(let type, let id):
            if let type { return ("(target_id = ? AND target_type = ?)", [.text(id), .text(type)]) }
            return ("target_id = ?", [.text(id)])
        case .referenceURL(let url):
            return ("url = ?", [.text(url)])
        case .uri(let uri):
            return ("value = ?", [.text(uri)])
        case .uriBelow(let uri):
            return ("(value >= ? AND value < ? || " + dialect.maxCharacter + ")", [.text(uri), .text(uri)])
        case .date(let prefix, let sl, let sh):
            let l = SQLValue.integer(Int(sl)), h = SQLValue.integer(Int(sh))
            switch prefix {
            case .eq: return ("(low >= ? AND high <= ?)", [l, h])
            case .ne: return ("NOT (low >= ? AND high <= ?)", [l, h])
            case .gt: return ("high > ?", [h])
            case .lt: return ("low < ?", [l])
            case .ge: return ("(high > ? OR (low >= ? AND high <= ?))", [h, l, h])
            case .le: return ("(low < ? OR (low >= ? AND high <= ?))", [l, l, h])
            case .sa: return ("low >= ?", [h])
            case .eb: return ("high <= ?", [l])
            case .ap: return ("(low < ? AND high > ?)", [h, l])
            }
        case .quantity(let prefix, let v, let low, let high, let system, let code):
            var cond: String
            var b: [SQLValue]
            switch prefix {
            case .eq: cond = "(value >= ? AND value < ?)"; b = [.double(low), .double(high)]
            case .ne: cond = "NOT (value >= ? AND value < ?)"; b = [.double(low), .double(high)]
            case .gt, .sa: cond = "value > ?"; b = [.double(v)]
            case .lt, .eb: cond = "value < ?"; b = [.double(v)]
            case .ge: cond = "value >= ?"; b = [.double(v)]
            case .le: cond = "value <= ?"; b = [.double(v)]
            case .ap: cond = "(value >= ? AND value <= ?)"; b = [.double(v - abs(v) * 0.1), .double(v + abs(v) * 0.1)]
            }
            if let code { cond += " AND code = ?"; b.append(.text(code)) }
            if let system { cond += " AND system = ?"; b.append(.text(system)) }
            return ("(" + cond + ")", b)
        case .id, .lastUpdated, .missing, .chain, .has, .compartment:
            return ("0", [])
        }
    }

    /// A prefix comparison of a point in time (a column) against a search range.
    func pointRange(_ column: String, _ prefix: SearchQuery.Prefix, _ low: Int64, _ high: Int64) -> (String, [SQLValue]) {
        let l = SQLValue.integer(Int(low)), h = SQLValue.integer(Int(high))
        switch prefix {
        case .eq, .ap: return ("(\(column) >= ? AND \(column) < ?)", [l, h])
        case .ne: return ("NOT (\(column) >= ? AND \(column) < ?)", [l, h])
        case .gt, .sa: return ("\(column) >= ?", [h])
        case .lt, .eb: return ("\(column) < ?", [l])
        case .ge: return ("\(column) >= ?", [l])
        case .le: return ("\(column) < ?", [h])
        }
    }

    func likeEscaped(_ s: String) -> String {
        var out = ""
        for c in s {
            if c == "%" || c == "_" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// The sort expression for one key (nil values last).
    package func sortExpression(_ key: SearchQuery.SortKey, type: String) -> (String, [SQLValue]) {
        let direction = key.descending ? "DESC" : "ASC"
        switch key.parameter {
        case "_id": return ("r.id \(direction)", [])
        case "_lastUpdated": return ("r.last_updated \(direction)", [])
        default: break
        }
        guard let table = Self.table(for: key.parameterType) else { return ("r.rid", []) }
        let column: String
        switch key.parameterType {
        case "date": column = key.descending ? "MAX(high)" : "MIN(low)"
        case "token": column = key.descending ? "MAX(code)" : "MIN(code)"
        case "reference": column = key.descending ? "MAX(target_id)" : "MIN(target_id)"
        default: column = key.descending ? "MAX(value)" : "MIN(value)"
        }
        let p = param(key.stored)
        let sub = "(SELECT \(column) FROM \(table) WHERE rid = r.rid AND \(p.sql))"
        return ("\(sub) IS NULL, \(sub) \(direction)", p.binds + p.binds)
    }

    /// Keys of matching resources (conditional interactions).
    package func compile(_ query: SearchQuery, limit: Int, topLevelAccess: Bool = true) -> (sql: String, binds: [SQLValue]) {
        let (w, b) = whereClause(query, topLevelAccess: topLevelAccess)
        return ("SELECT r.type, r.id, r.rid FROM resource r WHERE " + w + " ORDER BY r.rid LIMIT ?", b + [.integer(limit)])
    }
}

/// A conditional interaction's match (`If-None-Exist`, conditional update and delete, a
/// transaction's conditional URLs and references, and their re-checks under the writer's lock),
/// decided on the rows the caller may read (ADR 016) in two statements whose texts stay the same
/// from one request to the next: the match's candidates without this level's access condition,
/// then the condition on each candidate by its row id. Conditional URLs vary in shape (how many
/// identifiers a transaction names), so the one-statement form was prepared anew nearly every
/// time, the access condition's subqueries with it; an unmatched identifier, a feed's usual case,
/// now costs no access statement at all. Chains and `_has` inside keep their conditions. More than
/// `cap` candidates (a broad conditional) fall back to the one statement.
package struct ConditionalMatchSQL: Sendable {
    static let cap = 256
    let query: SearchQuery
    let limit: Int
    let search: SearchSQL
    let candidates: (sql: String, binds: [SQLValue])
    /// The access condition on one row id (its bind first, then these), or nil when every row may be read.
    let access: (sql: String, binds: [SQLValue])?

    package init(_ dialect: SQLDialect, _ query: SearchQuery, limit: Int) {
        self.query = query
        self.limit = limit
        search = SearchSQL(dialect)
        // Asked of one candidate row at a time: the row's own resident (`correlated`).
        if let (condition, binds) = AccessSQL.condition(query.scope, .row("r"), correlated: true) {
            candidates = search.compile(query, limit: Self.cap + 1, topLevelAccess: false)
            access = ("SELECT 1 FROM resource r WHERE r.rid = ? AND " + condition, binds)
        } else {
            candidates = search.compile(query, limit: limit)
            access = nil
        }
    }

    static func key(_ row: [SQLValue]) -> (ResourceKey, Int)? {
        guard row.count >= 3, let t = row[0].text, let id = row[1].text, let rid = row[2].integer else { return nil }
        return (ResourceKey(t, id), rid)
    }

    /// The matches, with a statement runner that runs one statement for several sets of
    /// parameters (the point reader's and the writer's connections).
    package func keys(_ run: (String, [[SQLValue]]) throws -> [[[SQLValue]]]) throws -> [ResourceKey] {
        let rows = try run(candidates.sql, [candidates.binds]).first ?? []
        guard let access else { return rows.compactMap { Self.key($0)?.0 } }
        if rows.count > Self.cap {
            let whole = search.compile(query, limit: limit)
            return (try run(whole.sql, [whole.binds]).first ?? []).compactMap { Self.key($0)?.0 }
        }
        let found = rows.compactMap(Self.key)
        guard !found.isEmpty else { return [] }
        let answers = try run(access.sql, found.map { [.integer($0.1)] + access.binds })
        return zip(found, answers).filter { !$0.1.isEmpty }.prefix(limit).map(\.0.0)
    }

    /// The same on an asynchronous executor.
    package func keys(_ db: any SQLExecutor) async throws -> [ResourceKey] {
        let rows = try await db.query(candidates.sql, candidates.binds)
        guard let access else { return rows.compactMap { Self.key($0)?.0 } }
        if rows.count > Self.cap {
            let whole = search.compile(query, limit: limit)
            return try await db.query(whole.sql, whole.binds).compactMap { Self.key($0)?.0 }
        }
        var out: [ResourceKey] = []
        for (key, rid) in rows.compactMap(Self.key) where out.count < limit {
            if !(try await db.query(access.sql, [.integer(rid)] + access.binds)).isEmpty { out.append(key) }
        }
        return out
    }
}
