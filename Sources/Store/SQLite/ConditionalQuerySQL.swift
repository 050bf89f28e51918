import SQLiteNIO

/// Compiles a `ConditionalQuery` to SQL. Every request value is a bound parameter;
/// only fixed fragments of this file are ever concatenated into the statement.
enum ConditionalQuerySQL {
    static func compile(_ query: ConditionalQuery, limit: Int) -> (sql: String, binds: [SQLiteData]) {
        var sql = "SELECT r.type, r.id FROM resource r WHERE r.type = ? AND r.deleted = 0"
        var binds: [SQLiteData] = [.text(query.type)]
        for clause in query.clauses {
            var alternatives: [String] = []
            for match in clause.values {
                switch match {
                case .id(let id):
                    alternatives.append("r.id = ?")
                    binds.append(.text(id))
                case .token(let system, let code):
                    var cond = "r.rid IN (SELECT rid FROM idx_token WHERE type = ? AND param = ?"
                    binds.append(.text(query.type)); binds.append(.text(clause.parameter))
                    if let code { cond += " AND code = ?"; binds.append(.text(code)) }
                    if let system {
                        if system.isEmpty { cond += " AND system IS NULL" } else { cond += " AND system = ?"; binds.append(.text(system)) }
                    }
                    alternatives.append(cond + ")")
                case .stringPrefix(let prefix):
                    alternatives.append("r.rid IN (SELECT rid FROM idx_string WHERE type = ? AND param = ? AND value >= ? AND value < ? || char(1114111))")
                    binds.append(contentsOf: [.text(query.type), .text(clause.parameter), .text(prefix), .text(prefix)])
                case .reference(let type, let id):
                    var cond = "r.rid IN (SELECT rid FROM idx_reference WHERE type = ? AND param = ? AND target_id = ?"
                    binds.append(contentsOf: [.text(query.type), .text(clause.parameter), .text(id)])
                    if let type { cond += " AND target_type = ?"; binds.append(.text(type)) }
                    alternatives.append(cond + ")")
                case .uri(let uri):
                    alternatives.append("r.rid IN (SELECT rid FROM idx_uri WHERE type = ? AND param = ? AND value = ?)")
                    binds.append(contentsOf: [.text(query.type), .text(clause.parameter), .text(uri)])
                }
            }
            if alternatives.isEmpty { continue }
            sql += " AND (" + alternatives.joined(separator: " OR ") + ")"
        }
        sql += " ORDER BY r.rid LIMIT ?"
        binds.append(.integer(limit))
        return (sql, binds)
    }
}
