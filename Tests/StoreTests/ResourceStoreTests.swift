import FHIRModel
import Foundation
import Platform
import Store
import StoreTestSupport
import XCTest

/// The store's contract, run on every available backend (SQLite; PostgreSQL when configured).
final class ResourceStoreTests: XCTestCase {
    func prepared(_ json: String, id: String, method: String = "POST", ifMatch: Int? = nil) throws -> PreparedWrite {
        try IngestPipeline().prepare(try JSONParser.parse(json), type: "Patient", id: id, method: method, ifMatch: ifMatch)
    }

    func test_committedWrites_surviveReopen_andMigrationsRunOnce() async throws {
        try await withEachBackend { test in
        let store = test.store
        _ = try await store.commit(WriteUnit(writes: [try prepared(patientJSON, id: "a")]))
        _ = try await store.commit(WriteUnit(writes: [try prepared(patientJSON, id: "a", method: "PUT")]))
        try await store.close()
        let reopened = try await test.reopen()
        let record = try await reopened.read(ResourceKey("Patient", "a"))
        XCTAssertEqual(record?.version, 2)
        // Versions and row ids continue where they left off.
        let outcome = try await reopened.commit(WriteUnit(writes: [try prepared(patientJSON, id: "b")]))
        XCTAssertEqual(outcome[0].version, 1)
        let a3 = try await reopened.commit(WriteUnit(writes: [try prepared(patientJSON, id: "a", method: "PUT")]))
        XCTAssertEqual(a3[0].version, 3)
        let history = try await reopened.history(HistoryQuery(type: "Patient", id: "a"))
        XCTAssertEqual(history.records.map(\.version), [3, 2, 1])
        try await reopened.close()
        }
    }

    func test_manyConcurrentUnits_allCommit_andFailedUnitsDoNotAffectNeighbours() async throws {
        try await withEachBackend { test in
        let store = test.store
        _ = try await store.commit(WriteUnit(writes: [try prepared(patientJSON, id: "fixed")]))
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<400 {
                let stale = i % 10 == 0
                let write = stale
                    ? try prepared(patientJSON, id: "fixed", method: "PUT", ifMatch: 99)
                    : try prepared(patientJSON, id: "p\(i)")
                group.addTask {
                    do {
                        _ = try await store.commit(WriteUnit(writes: [write]))
                        return true
                    } catch StoreError.versionConflict {
                        return false
                    }
                }
            }
            var r: [Bool] = []
            for try await ok in group { r.append(ok) }
            return r
        }
        XCTAssertEqual(results.filter { $0 }.count, 360)
        XCTAssertEqual(results.filter { !$0 }.count, 40)
        let counts = try await store.resourceCounts()
        XCTAssertEqual(counts["Patient"], 361)
        }
    }

    func test_searchFindsOnlyCurrentNonDeletedVersions() async throws {
        try await withEachBackend { test in
        let store = test.store
        let withID = #"{"resourceType":"Patient","identifier":[{"system":"s","value":"v1"}]}"#
        _ = try await store.commit(WriteUnit(writes: [try prepared(withID, id: "x")]))
        let query = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: "s", code: "v1")])])
        var found = try await store.search(query, limit: 10)
        XCTAssertEqual(found, [ResourceKey("Patient", "x")])
        // Updating away the identifier removes the old index rows.
        _ = try await store.commit(WriteUnit(writes: [try prepared(patientJSON, id: "x", method: "PUT")]))
        found = try await store.search(query, limit: 10)
        XCTAssertEqual(found, [])
        _ = try await store.commit(WriteUnit(writes: [try prepared(withID, id: "x", method: "PUT")]))
        found = try await store.search(query, limit: 10)
        XCTAssertEqual(found, [ResourceKey("Patient", "x")])
        _ = try await store.commit(WriteUnit(writes: [IngestPipeline().prepareDelete(ResourceKey("Patient", "x"))]))
        found = try await store.search(query, limit: 10)
        XCTAssertEqual(found, [])
        }
    }

    func test_searchValuesAreBound_notConcatenated() async throws {
        try await withEachBackend { test in
        let store = test.store
        _ = try await store.commit(WriteUnit(writes: [try prepared(patientJSON, id: "safe")]))
        for hostile in ["'; DROP TABLE resource; --", "%", "_", "\" OR 1=1 --"] {
            let query = SearchQuery(type: "Patient", clauses: [
                .init(parameter: "family", parameterType: "string", values: [.stringPrefix(hostile)]),
                .init(parameter: "identifier", values: [.token(system: hostile, code: hostile)]),
            ])
            let found = try await store.search(query, limit: 10)
            XCTAssertEqual(found, [], hostile)
        }
        let record = try await store.read(ResourceKey("Patient", "safe"))
        XCTAssertNotNil(record)
        }
    }

    let patientJSON = #"{"resourceType":"Patient","gender":"female"}"#
}
