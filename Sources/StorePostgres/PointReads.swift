import NIOCore
import PostgresNIO
import Store

/// Reads by id and version as prepared statements: parsed and planned once per connection, not
/// per request (the hot path of every client that follows a reference).
struct ReadCurrent: PostgresPreparedStatement {
    static let sql = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid
        WHERE r.type = $1 AND r.id = $2
        """
    typealias Row = (Int, Int, String, ByteBuffer?)
    let key: ResourceKey

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 2)
        b.append(key.type)
        b.append(key.id)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct ReadVersion: PostgresPreparedStatement {
    static let sql = """
        SELECT h.version, h.last_updated, h.method, h.content FROM resource r JOIN resource_history h ON h.rid = r.rid
        WHERE r.type = $1 AND r.id = $2 AND h.version = $3
        """
    typealias Row = (Int, Int, String, ByteBuffer?)
    let key: ResourceKey
    let version: Int

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 3)
        b.append(key.type)
        b.append(key.id)
        b.append(version)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension ResourceRecord {
    init(_ key: ResourceKey, _ row: (Int, Int, String, ByteBuffer?)) {
        self.init(key: key, version: row.0, lastUpdated: Int64(row.1), deleted: row.3 == nil, method: row.2, content: row.3)
    }
}
