import FHIRModel
import XCTest

/// The rows a CodeSystem keeps for the terminology service: a concept row per code (and one of
/// code "" for the system), and every (ancestor, code) pair of its hierarchy, however the
/// hierarchy is written.
final class ConceptIndexTests: XCTestCase {
    static func codeSystem(_ json: String) -> JSONObject {
        try! JSONParser.parse(Array(json.utf8)).objectValue!
    }

    static func closure(_ entries: [IndexEntry]) -> Set<String> {
        Set(entries.compactMap { e -> String? in
            if case .closure(_, let ancestor, let code) = e.value { return "\(ancestor)>\(code)" } else { return nil }
        })
    }

    static func concepts(_ entries: [IndexEntry]) -> [String: ConceptEntry] {
        var found: [String: ConceptEntry] = [:]
        for e in entries { if case .concept(let c) = e.value { found[c.code] = c } }
        return found
    }

    func test_nestedConcepts_makeTheClosure_andTheSystemRow() {
        let entries = ConceptIndex.entries(for: Self.codeSystem(#"""
            {"resourceType":"CodeSystem","url":"urn:x","version":"1","name":"X","status":"active","content":"complete",
             "concept":[{"code":"a","display":"A","concept":[{"code":"b","display":"B","designation":[{"language":"zh-CN","value":"乙"}],
                          "concept":[{"code":"c"}]}]},{"code":"d"}]}
            """#))
        XCTAssertEqual(Self.closure(entries), ["a>a", "b>b", "c>c", "d>d", "a>b", "a>c", "b>c"])
        let concepts = Self.concepts(entries)
        XCTAssertEqual(Set(concepts.keys), ["", "a", "b", "c", "d"])
        XCTAssertEqual(concepts[""]?.display, "X")
        XCTAssertTrue(concepts[""]!.detail.contains(#""count":4"#), concepts[""]!.detail)
        XCTAssertEqual(concepts["b"]?.display, "B")
        XCTAssertTrue(concepts["b"]!.detail.contains("乙") && concepts["b"]!.detail.contains(#""parent":["a"]"#), concepts["b"]!.detail)
        XCTAssertTrue(concepts["a"]!.detail.contains(#""child":["b"]"#))
        XCTAssertEqual(concepts["a"]?.version, "1")
    }

    func test_parentAndChildProperties_byTheirURIs_andCyclesAreCut() {
        let entries = ConceptIndex.entries(for: Self.codeSystem(#"""
            {"resourceType":"CodeSystem","url":"urn:y","status":"active","content":"complete",
             "property":[{"code":"up","uri":"http://hl7.org/fhir/concept-properties#parent","type":"code"},
                         {"code":"parent","uri":"http://example.org/not-a-parent","type":"code"}],
             "concept":[{"code":"root"},
                        {"code":"k1","property":[{"code":"up","valueCode":"root"}]},
                        {"code":"k2","property":[{"code":"up","valueCode":"k1"},{"code":"parent","valueCode":"root"}]},
                        {"code":"loop1","property":[{"code":"up","valueCode":"loop2"}]},
                        {"code":"loop2","property":[{"code":"up","valueCode":"loop1"}]},
                        {"code":"old","property":[{"code":"status","valueCode":"retired"}]}]}
            """#))
        let closure = Self.closure(entries)
        XCTAssertTrue(closure.isSuperset(of: ["root>k1", "root>k2", "k1>k2", "k2>k2"]))
        XCTAssertTrue(closure.isSuperset(of: ["loop1>loop2", "loop2>loop1"]), "a cycle is each other's ancestor, and it ends")
        XCTAssertEqual(Self.concepts(entries)["k2"]?.detail.contains(#""parent":["k1"]"#), true, "'parent' of another meaning is not the hierarchy")
        XCTAssertEqual(Self.concepts(entries)["old"]?.detail.contains(#""inactive":true"#), true)
    }

    func test_supplementsAndSystemsWithoutURL_keepNoRows() {
        XCTAssertTrue(ConceptIndex.entries(for: Self.codeSystem(#"{"resourceType":"CodeSystem","url":"urn:s","status":"active","content":"supplement","supplements":"urn:x","concept":[{"code":"a"}]}"#)).isEmpty)
        XCTAssertTrue(ConceptIndex.entries(for: Self.codeSystem(#"{"resourceType":"CodeSystem","status":"active","content":"complete","concept":[{"code":"a"}]}"#)).isEmpty)
    }

    func test_aHierarchyTooDeepToIndex_isAProblem_notHalfIndexed() {
        var concepts: [String] = [#"{"code":"c0"}"#]
        for i in 1...300 { concepts.append(#"{"code":"c\#(i)","property":[{"code":"parent","valueCode":"c\#(i - 1)"}]}"#) }
        let deep = Self.codeSystem(#"{"resourceType":"CodeSystem","url":"urn:deep","status":"active","content":"complete","concept":["#
                                   + concepts.joined(separator: ",") + "]}")
        XCTAssertNotNil(ConceptIndex.problem(deep))
        XCTAssertTrue(ConceptIndex.entries(for: deep).isEmpty)
        let shallow = Self.codeSystem(#"{"resourceType":"CodeSystem","url":"urn:deep","status":"active","content":"complete","concept":["#
                                      + concepts.prefix(100).joined(separator: ",") + "]}")
        XCTAssertNil(ConceptIndex.problem(shallow))
        XCTAssertEqual(Self.closure(ConceptIndex.entries(for: shallow)).count, 100 * 101 / 2)
    }
}
