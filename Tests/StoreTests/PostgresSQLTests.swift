import PostgresNIO
@testable import StorePostgres
import Store
import XCTest

/// The shared statement text becomes PostgreSQL's: placeholders numbered, literals untouched.
final class PostgresSQLTests: XCTestCase {
    func test_placeholders_numberedInOrder_butNotInsideQuotedLiterals() {
        let q = PostgresSQL.query("SELECT 1 WHERE a = ? AND b LIKE ? ESCAPE '\\' AND c = '?' AND d IN (?, ?)",
                                  [.integer(1), .text("x%"), .double(2.5), .null])
        XCTAssertEqual(q.sql, "SELECT 1 WHERE a = $1 AND b LIKE $2 ESCAPE '\\' AND c = '?' AND d IN ($3, $4)")
        XCTAssertEqual(q.binds.count, 4)
    }

    func test_advisoryLockKey_isStableAcrossProcesses() {
        // FNV-1a 64 of a fixed text: every node must compute the same key for the same search.
        XCTAssertEqual(PostgresWriter.lockKey(""), Int(Int64(bitPattern: 0xcbf2_9ce4_8422_2325)))
        XCTAssertEqual(PostgresWriter.lockKey("a"), Int(Int64(bitPattern: 0xaf63_dc4c_8601_ec8c)))
        XCTAssertNotEqual(PostgresWriter.lockKey("identifier=1"), PostgresWriter.lockKey("identifier=2"))
    }

    func test_databaseURL_parsesCredentialsAndHidesThePassword() throws {
        let c = try PostgresURL.configuration("postgres://hu%40itong:s%3Acret@db.example:6543/regional?sslmode=disable")
        XCTAssertEqual(c.username, "hu@itong")
        XCTAssertEqual(c.password, "s:cret")
        XCTAssertEqual(c.database, "regional")
        XCTAssertEqual(c.host, "db.example")
        XCTAssertEqual(c.port, 6543)
        XCTAssertFalse(PostgresURL.redacted("postgres://u:secret@h/db").contains("secret"))
        XCTAssertThrowsError(try PostgresURL.configuration("mysql://u@h/db"))
    }
}
