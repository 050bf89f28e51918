import FHIRModel
import XCTest

/// Parameters made of others (`combo-code` = `code` ∪ `component-code`) keep no index rows of
/// their own; searches on them read their parts' rows.
final class FoldedParametersTests: XCTestCase {
    func test_theR4FoldedParameters_areObservationsComboParameters() {
        let folded = SearchParameterRegistry.r4.folded
        XCTAssertEqual(Array(folded.keys), ["Observation"])
        XCTAssertEqual(folded["Observation"], [
            "combo-code": ["code", "component-code"],
            "combo-data-absent-reason": ["component-data-absent-reason", "data-absent-reason"],
            "combo-value-concept": ["component-value-concept", "value-concept"],
            "combo-value-quantity": ["component-value-quantity", "value-quantity"],
        ])
        XCTAssertEqual(SearchParameterRegistry.r4.stored("combo-code:text", for: "Observation"), ["code:text", "component-code:text"])
        XCTAssertEqual(SearchParameterRegistry.r4.stored("code", for: "Observation"), ["code"])
    }

    func test_foldedParameters_getNoRows_theirPartsDo() throws {
        let obs = try JSONParser.parse("""
        {"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}],"text":"血压"},
         "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"code":"mm[Hg]"}}]}
        """).objectValue!
        let parameters = Set(IndexExtractor().entries(for: obs, type: "Observation").map(\.parameter))
        XCTAssertTrue(parameters.isSuperset(of: ["code", "component-code", "code:text", "component-value-quantity"]))
        XCTAssertTrue(parameters.isDisjoint(with: ["combo-code", "combo-code:text", "combo-value-quantity"]))
    }
}
