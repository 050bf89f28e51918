import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) @testable import Store
import StoreTestSupport
import XCTest

/// A facility's conditional updates name their record by identifier and restrict it to the
/// facility (`_source`): the identifier must drive the search, the facility be checked per
/// candidate. Both forms find the same records.
final class SearchPlanTests: XCTestCase {
    func observation(_ id: String, code: String, source: String) throws -> PreparedWrite {
        let json = #"{"resourceType":"Observation","status":"final","code":{"text":"x"},"#
            + #""identifier":[{"system":"urn:test:result","value":"\#(code)"}],"meta":{"source":"\#(source)"}}"#
        return try IngestPipeline().prepare(try JSONParser.parse(json), type: "Observation", id: id, method: "PUT")
    }

    func query(_ code: String, source: String) -> SearchQuery {
        SearchQuery(type: "Observation", clauses: [
            .init(parameter: "identifier", values: [.token(system: "urn:test:result", code: code)]),
            .init(parameter: "_source", parameterType: "uri", values: [.uri(source)]),
        ])
    }

    func test_identifierDrives_andTheFacilityIsCheckedPerCandidate() throws {
        let (sql, _) = SearchSQL(.sqlite).compile(query("r1", source: "urn:huitong:facility:a"), limit: 2)
        XCTAssertFalse(sql.contains("INTERSECT"), sql)
        XCTAssertTrue(sql.contains("EXISTS (SELECT 1 FROM idx_uri WHERE rid = r.rid"), sql)
        XCTAssertTrue(sql.contains("r.rid IN (SELECT rid FROM idx_token"), sql)
        // Alone, the facility clause still drives (there is nothing narrower).
        let alone = SearchQuery(type: "Observation", clauses: [.init(parameter: "_source", parameterType: "uri", values: [.uri("urn:x")])])
        XCTAssertTrue(SearchSQL(.sqlite).compile(alone, limit: 2).sql.contains("r.rid IN (SELECT rid FROM idx_uri"))
    }

    func test_identifierAndFacility_findOnlyTheFacilitysRecord() async throws {
        try await withEachBackend { test in
            let store = test.store
            var writes: [PreparedWrite] = []
            for i in 0..<40 { writes.append(try self.observation("a\(i)", code: "r\(i)", source: "urn:huitong:facility:a")) }
            writes.append(try self.observation("b1", code: "r1", source: "urn:huitong:facility:b"))
            _ = try await store.commit(WriteUnit(writes: writes))
            let mine = try await store.search(self.query("r1", source: "urn:huitong:facility:a"), limit: 2)
            XCTAssertEqual(mine, [ResourceKey("Observation", "a1")])
            let theirs = try await store.search(self.query("r1", source: "urn:huitong:facility:b"), limit: 2)
            XCTAssertEqual(theirs, [ResourceKey("Observation", "b1")])
            let none = try await store.search(self.query("r7", source: "urn:huitong:facility:b"), limit: 2)
            XCTAssertEqual(none, [])
            try await store.close()
        }
    }
}
