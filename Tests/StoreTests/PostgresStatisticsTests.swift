import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) import Store
import StorePostgres
import StoreTestSupport
import XCTest

/// A PostgreSQL store that grows fast gets the planner's statistics without waiting for
/// autovacuum (at most once a minute): without them, a blocking-key assumption walked every
/// Patient per query (ADR 015).
final class PostgresStatisticsTests: XCTestCase {
    func test_aStoreThatGrows_analysesItsTables() async throws {
        guard let url = TestBackend.postgresURL else {
            throw XCTSkip("HUITONG_TEST_POSTGRES_URL is not set: statistics after growth were not tested")
        }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let store = try await PostgresStore.open(url: url, searchPath: schema, createSchema: true, maxConnections: 4)
        addTeardownBlock {
            try? await store.close()
            try? await PostgresStore.dropSchema(url: url, schema)
        }
        let pipeline = IngestPipeline()
        func register(_ n: Int) async throws {
            let json = #"{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"p\#(n)"}],"#
                + #""name":[{"family":"Zhang","given":["San\#(n)"]}],"gender":"male","birthDate":"1980-01-01"}"#
            _ = try await store.commit(WriteUnit(writes: [try pipeline.prepare(try JSONParser.parse(json), type: "Patient", id: "p\(n)", method: "PUT")]))
        }
        try await register(0)
        let before = try await store.lastAnalysed("idx_token")
        XCTAssertNil(before, "a new store has not been analysed")
        // Each registration writes the Patient and a dozen index rows: past 1,000 rows in all.
        for n in 1...120 { try await register(n) }
        var waited = 0
        while try await store.lastAnalysed("idx_token") == nil {
            waited += 1
            XCTAssertLessThan(waited, 300, "the grown tables were never analysed")
            if waited >= 300 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let resource = try await store.lastAnalysed("resource")
        XCTAssertNotNil(resource, "the resource table is analysed with the index tables")
    }
}
