import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) import Store
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

    func test_updates_leaveExactlyTheNewVersionsSearchValues() async throws {
        try await withEachBackend { test in
        let store = test.store
        func put(_ json: String) async throws {
            _ = try await store.commit(WriteUnit(writes: [try prepared(json, id: "u", method: "PUT")]))
        }
        func finds(_ parameter: String, _ value: SearchQuery.Match, type: String? = nil) async throws -> Bool {
            let query = SearchQuery(type: "Patient", clauses: [.init(parameter: parameter, parameterType: type ?? "token", values: [value])])
            return try await store.search(query, limit: 10) == [ResourceKey("Patient", "u")]
        }
        try await put(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"a"},{"system":"s","value":"b"}],"name":[{"family":"Wang","given":["Wei"]}],"gender":"female","birthDate":"1980-01-01"}"#)
        // Some values stay, some go, some come (the SQLite writer writes only the difference).
        try await put(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"b"},{"system":"s","value":"c"}],"name":[{"family":"Wang","given":["Fang"]}],"gender":"male","birthDate":"1980-01-01"}"#)
        var found: [Bool] = []
        for (parameter, value, type) in [("identifier", SearchQuery.Match.token(system: "s", code: "a"), nil as String?),
                                         ("identifier", .token(system: "s", code: "b"), nil), ("identifier", .token(system: "s", code: "c"), nil),
                                         ("family", .stringPrefix("wang"), "string"), ("given", .stringPrefix("wei"), "string"),
                                         ("given", .stringPrefix("fang"), "string"), ("gender", .token(system: nil, code: "female"), nil),
                                         ("gender", .token(system: nil, code: "male"), nil)] {
            found.append(try await finds(parameter, value, type: type))
        }
        XCTAssertEqual(found, [false, true, true, true, false, true, false, true])
        // The same value twice, then once, then not at all: the rows are counted, not just compared.
        try await put(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"c"},{"system":"s","value":"c"}]}"#)
        try await put(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"c"}]}"#)
        let stillThere = try await finds("identifier", .token(system: "s", code: "c"))
        XCTAssertTrue(stillThere)
        try await put(#"{"resourceType":"Patient","gender":"other"}"#)
        let gone = try await finds("identifier", .token(system: "s", code: "c"))
        let familyGone = try await finds("family", .stringPrefix("wang"), type: "string")
        XCTAssertFalse(gone)
        XCTAssertFalse(familyGone)
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
