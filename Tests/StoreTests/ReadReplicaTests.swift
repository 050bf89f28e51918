import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) import Store
import StorePostgres
import StoreTestSupport
import XCTest

/// `--read-database`: searches go to the replica, while reads by id and the searches that
/// decide writes (conditional interactions) go to the primary. Proven by pausing the
/// replica's replay: what it has not applied yet is visible only through the primary.
final class ReadReplicaTests: XCTestCase {
    func test_searchesUseReplica_readsAndConditionalSearchesUsePrimary() async throws {
        guard let primaryURL = TestBackend.postgresURL,
              let replicaURL = ProcessInfo.processInfo.environment["HUITONG_TEST_POSTGRES_REPLICA_URL"], !replicaURL.isEmpty else {
            throw XCTSkip("HUITONG_TEST_POSTGRES_URL and HUITONG_TEST_POSTGRES_REPLICA_URL are not both set: read-replica routing was not tested")
        }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let store = try await PostgresStore.open(url: primaryURL, readURL: replicaURL, searchPath: schema, createSchema: true, maxConnections: 4)
        addTeardownBlock {
            try? await PostgresStore.execute(url: replicaURL, "SELECT pg_wal_replay_resume()")
            try? await store.close()
            try? await PostgresStore.dropSchema(url: primaryURL, schema)
        }
        func create(_ id: String) async throws {
            let json = #"{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"\#(id)"}]}"#
            _ = try await store.commit(WriteUnit(writes: [try IngestPipeline().prepare(try JSONParser.parse(json), type: "Patient", id: id, method: "PUT")]))
        }
        func query(_ id: String) -> SearchQuery {
            SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: "urn:test", code: id)])])
        }
        func searched(_ id: String) async throws -> Int {
            try await store.search(query(id), page: PageRequest(count: 10)).records.count
        }
        // The replica catches up with the first write.
        try await create("a")
        var waited = 0
        while try await searched("a") == 0 {
            waited += 1
            XCTAssertLessThan(waited, 500, "the replica never showed the write")
            try await Task.sleep(for: .milliseconds(20))
        }
        try await PostgresStore.execute(url: replicaURL, "SELECT pg_wal_replay_pause()")
        try await create("b")
        let read = try await store.read(ResourceKey("Patient", "b"))
        XCTAssertEqual(read?.version, 1, "read by id sees the primary")
        let conditional = try await store.search(query("b"), limit: 2)
        XCTAssertEqual(conditional, [ResourceKey("Patient", "b")], "conditional searches see the primary")
        try await Task.sleep(for: .milliseconds(200))
        let onReplica = try await searched("b")
        XCTAssertEqual(onReplica, 0, "searches go to the (paused) replica")
        try await PostgresStore.execute(url: replicaURL, "SELECT pg_wal_replay_resume()")
        waited = 0
        while try await searched("b") == 0 {
            waited += 1
            XCTAssertLessThan(waited, 500, "the replica never caught up after resuming")
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
