import Access
import FHIRModel
import Foundation
import Platform
import Store
import StoreTestSupport
import Terminology
import XCTest

/// The terminology rows on both stores (ADR 022): a CodeSystem's concepts and closure are written,
/// replaced and removed with it, and lookups, subsumption, expansion and `:below` / `:in` read them.
final class TerminologyStoreTests: XCTestCase {
    static let system = "urn:test:terminology"

    static func codeSystem(extra: String = "") -> JSON {
        try! JSONParser.parse(Array(#"""
            {"resourceType":"CodeSystem","id":"t","url":"urn:test:terminology","version":"1","name":"T","status":"active","content":"complete",
             "concept":[{"code":"root","display":"根","concept":[{"code":"a","display":"甲","designation":[{"language":"en","value":"A"}],
                          "concept":[{"code":"a1"},{"code":"a2"}\#(extra)]},{"code":"b"}]}]}
            """#.utf8))
    }

    static func condition(_ id: String, _ code: String) -> JSON {
        try! JSONParser.parse(Array(#"{"resourceType":"Condition","id":"\#(id)","subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"urn:test:terminology","code":"\#(code)"}]}}"#.utf8))
    }

    func test_rowsFollowTheCodeSystem_andAnswerLookupsSubsumptionAndSearch() async throws {
        try await withEachBackend { test in
            let service = FHIRService(store: test.store, matching: nil, principal: .platform)
            _ = try await service.update("CodeSystem", "t", body: Self.codeSystem())
            let lookup = CodeSystemLookup(store: test.store)
            let below = try await test.store.concepts(system: Self.system, version: nil, .below("a"), after: nil, limit: 100).map(\.code)
            XCTAssertEqual(below, ["a", "a1", "a2"])
            let a1 = try await lookup.concept(Self.system, "a1", version: nil)
            XCTAssertEqual(a1?.parents, ["a"])
            let a = try await lookup.concept(Self.system, "a", version: nil)
            XCTAssertEqual(a?.display(in: "en"), "A")
            let isAncestor = try await lookup.isAncestor("root", of: "a2", system: Self.system, version: nil)
            XCTAssertTrue(isAncestor)

            // An update replaces the rows; :below sees the new concept.
            _ = try await service.update("CodeSystem", "t", body: Self.codeSystem(extra: #",{"code":"a3"}"#))
            for (id, code) in [("c1", "a1"), ("c2", "a3"), ("c3", "b"), ("c4", "root")] {
                _ = try await service.update("Condition", id, body: Self.condition(id, code))
            }
            var searches = SearchService(store: test.store).acting(as: .platform)
            searches.valueSets = ValueSetExpander(store: test.store)
            func ids(_ query: String) async throws -> Set<String> {
                let parsed = try searches.parse(type: "Condition", query: query, strict: true)
                return Set(try await searches.run(parsed).matches.map(\.key.id))
            }
            let found = try await ids("code:below=urn:test:terminology|a")
            XCTAssertEqual(found, ["c1", "c2"])
            let above = try await ids("code:above=urn:test:terminology|a1")
            XCTAssertEqual(above, ["c1", "c4"])
            _ = try await service.update("ValueSet", "v", body: try JSONParser.parse(Array(#"""
                {"resourceType":"ValueSet","id":"v","url":"urn:test:vs","status":"active",
                 "compose":{"include":[{"system":"urn:test:terminology","filter":[{"property":"concept","op":"is-a","value":"a"}]}],
                            "exclude":[{"system":"urn:test:terminology","concept":[{"code":"a1"}]}]}}
                """#.utf8)))
            let inSet = try await ids("code:in=urn:test:vs")
            XCTAssertEqual(inSet, ["c2"])
            let notIn = try await ids("code:not-in=urn:test:vs")
            XCTAssertEqual(notIn, ["c1", "c3", "c4"])

            // A deleted CodeSystem keeps no rows.
            _ = try await service.delete("CodeSystem", "t")
            let left = try await test.store.concepts(system: Self.system, version: nil, .all, after: nil, limit: 100)
            XCTAssertEqual(left.count, 0)
        }
    }

    /// With no version asked for, the newest stored version answers: "10" is newer than "9", and
    /// an expansion lists each code once, from that version.
    func test_newestVersionIsChosenByNumericOrder() async throws {
        try await withEachBackend { test in
            let service = FHIRService(store: test.store, matching: nil, principal: .platform)
            for (id, version, display) in [("v9", "9", "旧"), ("v10", "10", "新"), ("v2", "2.1", "更旧")] {
                _ = try await service.update("CodeSystem", id, body: try JSONParser.parse(Array(#"""
                    {"resourceType":"CodeSystem","id":"\#(id)","url":"urn:test:versions","version":"\#(version)","status":"active","content":"complete",
                     "concept":[{"code":"x","display":"\#(display)"},{"code":"y"}]}
                    """#.utf8)))
            }
            let lookup = CodeSystemLookup(store: test.store)
            let header = try await lookup.codeSystem("urn:test:versions", version: nil)
            XCTAssertEqual(header?.entry.version, "10")
            let x = try await lookup.concept("urn:test:versions", "x", version: nil)
            XCTAssertEqual(x?.display, "新")
            let expanded = try await ValueSetExpander(store: test.store).expand(try JSONParser.parse(Array(#"""
                {"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"urn:test:versions"}]}}
                """#.utf8)).objectValue!)
            XCTAssertEqual(expanded.map(\.code), ["x", "y"])
            XCTAssertEqual(expanded.map(\.version), ["10", "10"])
        }
    }
}

