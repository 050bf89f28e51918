import SQLiteNIO
import Synchronization

/// The SQLite store's reader connections as one `SQLExecutor`, used round-robin.
final class SQLiteReaders: SQLExecutor {
    let connections: [SQLiteConnection]
    private let next = Atomic<Int>(0)

    init(_ connections: [SQLiteConnection]) {
        self.connections = connections
    }

    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return try await connections[i % connections.count].rows(sql, binds)
    }
}

extension SQLiteConnection {
    /// Runs a statement with shared `SQLValue` parameters and returns its rows as `SQLValue`s.
    func rows(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        try await query(sql, binds.map(\.sqlite)).map { row in row.columns.map { SQLValue($0.data) } }
    }
}

extension SQLValue {
    init(_ data: SQLiteData) {
        switch data {
        case .integer(let v): self = .integer(v)
        case .float(let v): self = .double(v)
        case .text(let v): self = .text(v)
        case .blob(let v): self = .blob(v)
        case .null: self = .null
        }
    }

    var sqlite: SQLiteData {
        switch self {
        case .integer(let v): .integer(v)
        case .double(let v): .float(v)
        case .text(let v): .text(v)
        case .blob(let v): .blob(v)
        case .null: .null
        }
    }
}
