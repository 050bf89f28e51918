import FHIRModel
import Terminology
import XCTest

/// A code system from a CSV table, as an operator exports one from a spreadsheet: quoted fields,
/// Chinese and English names, a parent column, a property, a BOM.
final class CSVCodeSystemTests: XCTestCase {
    func test_aTable_becomesACodeSystemWithItsHierarchyAndDesignations() throws {
        let csv = "\u{FEFF}编码,名称,English,上级,类别\r\n"
            + "1,男,Male,,性别\r\n"
            + "2,女,Female,,性别\r\n"
            + "9,\"未说明的性别, 其他\",\"Not stated, \"\"other\"\"\",,性别\r\n"
            + "91,未说明,Unspecified,9,\n"
        let table = CSVCodeSystem(url: "urn:test:gbt-2261.1", version: "2003", title: "性别代码",
                                  columns: try CSVCodeSystem.columns(["code=编码", "zh=名称", "en=English", "parent=上级", "property:category=类别"]))
        let cs = try table.codeSystem(csv)
        XCTAssertEqual(cs["url"]?.stringValue, "urn:test:gbt-2261.1")
        XCTAssertEqual(cs["count"], .number("4"))
        let concepts = cs["concept"]?.arrayValue ?? []
        XCTAssertEqual(concepts.compactMap { $0["code"]?.stringValue }, ["1", "2", "9", "91"])
        XCTAssertEqual(concepts[2]["display"]?.stringValue, "未说明的性别, 其他")
        XCTAssertEqual(concepts[2]["designation"]?[1]?["value"]?.stringValue, #"Not stated, "other""#)
        XCTAssertEqual(concepts[3]["property"]?[0]?["valueCode"]?.stringValue, "9")
        XCTAssertEqual(concepts[0]["property"]?[0]?["valueString"]?.stringValue, "性别")
        // The hierarchy is what the concept rows read.
        let closure = ConceptIndex.entries(for: cs).compactMap { e -> String? in
            if case .closure(_, let a, let c) = e.value, a != c { return "\(a)>\(c)" } else { return nil }
        }
        XCTAssertEqual(closure, ["9>91"])
    }

    func test_aMissingMappedColumn_andDuplicateCodes_areRefused() throws {
        let table = CSVCodeSystem(url: "urn:t", columns: try CSVCodeSystem.columns(["code=编码"]))
        XCTAssertThrowsError(try table.codeSystem("code,display\n1,a\n"))
        XCTAssertThrowsError(try CSVCodeSystem(url: "urn:t").codeSystem("code,display\n1,a\n1,b\n"))
        XCTAssertThrowsError(try CSVCodeSystem.columns(["colour=x"]))
    }
}
