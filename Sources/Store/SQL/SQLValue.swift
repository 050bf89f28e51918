import NIOCore

/// A bound parameter or a result cell, the same for every SQL backend. Statements use `?`
/// placeholders; a backend translates them (PostgreSQL: `$1`, `$2`, ...).
package enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int)
    case double(Double)
    case text(String)
    case blob(ByteBuffer)

    package var integer: Int? { if case .integer(let v) = self { v } else { nil } }
    package var double: Double? {
        switch self {
        case .double(let v): v
        case .integer(let v): Double(v)
        default: nil
        }
    }
    package var text: String? { if case .text(let v) = self { v } else { nil } }
    package var blob: ByteBuffer? { if case .blob(let v) = self { v } else { nil } }
}

/// What differs between the SQL of the two stores. Everything else is shared text.
package struct SQLDialect: Sendable {
    /// An expression for the highest Unicode code point, the upper bound of prefix ranges.
    package let maxCharacter: String
    /// SQLite: `+column` keeps the planner from driving a query through that column's index.
    /// PostgreSQL has no such hint (and no unary plus on text).
    package let noIndexPrefix: String

    package static let sqlite = SQLDialect(maxCharacter: "char(1114111)", noIndexPrefix: "+")
    package static let postgres = SQLDialect(maxCharacter: "chr(1114111)", noIndexPrefix: "")
}

/// Runs one statement with `?` parameters and returns its rows; the shared read queries
/// (`SQLReadQueries`) and search compiler run on this for every backend.
package protocol SQLExecutor: Sendable {
    var dialect: SQLDialect { get }
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]]
}
