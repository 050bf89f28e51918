import FHIRModel
import XCTest

/// Parameters made of others (`combo-code` = `code` ∪ `component-code`), or with exactly another's
/// paths (`phonetic` = `name`), keep no index rows of their own; searches on them read their parts' rows.
final class FoldedParametersTests: XCTestCase {
    func test_theR4FoldedParameters_areObservationsComboParameters() {
        let folded = SearchParameterRegistry.r4.folded
        XCTAssertEqual(Set(folded.keys), ["Observation", "Patient", "Person", "Practitioner", "CodeSystem"])
        for type in ["Patient", "Person", "Practitioner"] { XCTAssertEqual(folded[type], ["phonetic": ["name"]], type) }
        XCTAssertEqual(folded["CodeSystem"], ["url": ["system"]])
        XCTAssertEqual(SearchParameterRegistry.r4.stored("phonetic:exact", for: "Patient"), ["name:exact"])
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

    func test_aPatientsNameRows_holdPhoneticSearches() throws {
        let patient = try JSONParser.parse(#"{"resourceType":"Patient","name":[{"family":"欧阳","given":["娜娜"]}]}"#).objectValue!
        let parameters = Set(IndexExtractor().entries(for: patient, type: "Patient").map(\.parameter))
        XCTAssertTrue(parameters.isSuperset(of: ["name", "family", "given"]))
        XCTAssertFalse(parameters.contains("phonetic"))
    }
}
