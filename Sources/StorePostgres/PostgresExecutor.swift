import Logging
import NIOCore
import PostgresNIO
import Store

/// The shared SQL (`?` placeholders, `SQLValue`s) on PostgreSQL: a pool, or one connection
/// inside an open transaction.
struct PostgresExecutor: SQLExecutor {
    enum Target: Sendable {
        case pool(PostgresClient)
        // Only used inside the closure that leased the connection.
        case connection(PostgresConnection)
    }

    let target: Target
    let logger: Logger

    var dialect: SQLDialect { .postgres }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        let query = PostgresSQL.query(sql, binds)
        do {
            let rows: PostgresRowSequence
            switch target {
            case .pool(let client): rows = try await client.query(query, logger: logger)
            case .connection(let connection): rows = try await connection.query(query, logger: logger)
            }
            var result: [[SQLValue]] = []
            for try await row in rows {
                result.append(row.map(SQLValue.init(cell:)))
            }
            return result
        } catch let error as PSQLError {
            throw PostgresFailure(error, sql: sql)
        }
    }
}

/// A PostgreSQL error with the server's message and SQLSTATE (PostgresNIO's own error hides
/// them from `description`), and the statement that failed.
struct PostgresFailure: Error, CustomStringConvertible {
    let sqlState: String?
    let message: String
    let sql: String

    init(_ error: PSQLError, sql: String) {
        self.sqlState = error.serverInfo?[.sqlState]
        self.message = PostgresSQL.describe(error)
        self.sql = sql
    }

    var description: String { "PostgreSQL: \(message) in: \(sql.prefix(300))" }
}

/// Translation of the shared statement text and values to PostgreSQL's.
enum PostgresSQL {
    /// `?` → `$1`, `$2`, ... outside quoted literals; values bound in order.
    static func query(_ sql: String, _ binds: [SQLValue]) -> PostgresQuery {
        var text = ""
        text.reserveCapacity(sql.utf8.count + binds.count * 2)
        var n = 0
        var quoted = false
        for c in sql {
            if c == "'" { quoted.toggle() }
            if c == "?" && !quoted {
                n += 1
                text += "$\(n)"
            } else {
                text.append(c)
            }
        }
        var bindings = PostgresBindings(capacity: binds.count)
        for value in binds {
            switch value {
            case .null: bindings.appendNull()
            case .integer(let v): bindings.append(v)
            case .double(let v): bindings.append(v)
            case .text(let v): bindings.append(v)
            case .blob(let v): bindings.append(v)
            }
        }
        return PostgresQuery(unsafeSQL: text, binds: bindings)
    }

    /// A quoted SQL identifier (schema names from configuration; quotes are dropped).
    static func identifier(_ name: String) -> String {
        "\"" + name.filter { $0 != "\"" } + "\""
    }

    /// The SQLSTATE of a server error, if `error` is one.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PostgresFailure)?.sqlState ?? (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// The server's message, for errors shown to operators.
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if e.code == .server, let message = e.serverInfo?[.message] {
            return message + (e.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
        }
        if e.serverInfo == nil { return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "") }
        if let message = e.serverInfo?[.message] {
            return message + (e.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
        }
        return "\(e.code)"
    }
}

extension SQLValue {
    init(cell: PostgresCell) {
        guard cell.bytes != nil else { self = .null; return }
        switch cell.dataType {
        case .int8, .int4, .int2:
            self = (try? cell.decode(Int.self)).map(SQLValue.integer) ?? .null
        case .float8, .float4:
            self = (try? cell.decode(Double.self)).map(SQLValue.double) ?? .null
        case .bool:
            self = (try? cell.decode(Bool.self)).map { .integer($0 ? 1 : 0) } ?? .null
        case .bytea:
            self = (try? cell.decode(ByteBuffer.self)).map(SQLValue.blob) ?? .null
        default:
            self = (try? cell.decode(String.self)).map(SQLValue.text) ?? .null
        }
    }
}

extension PostgresClient {
    /// Runs `body` in one transaction on a leased connection: COMMIT when it returns, ROLLBACK when
    /// it throws (its error passes on unchanged, so callers still see SQLSTATEs and `StoreError`s).
    func transaction<T: Sendable>(logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let result = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }
}
