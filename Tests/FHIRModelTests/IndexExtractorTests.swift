import FHIRModel
import XCTest

final class IndexExtractorTests: XCTestCase {
    func test_patientIdentifierNameAndBirthdate_areIndexed() throws {
        let patient = try JSONParser.parse("""
        {"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.1","value":"110101199003071234"}],
         "name":[{"family":"Zhāng","given":["Wěi"]}],"birthDate":"1990-03","gender":"male"}
        """).objectValue!
        let entries = IndexExtractor().entries(for: patient, type: "Patient")
        XCTAssertTrue(entries.contains(IndexEntry("identifier", .token(system: "urn:oid:2.16.156.10011.1.1", code: "110101199003071234"))))
        XCTAssertTrue(entries.contains(IndexEntry("family", .string("zhang", exact: "Zhāng"))), "accents and case are folded")
        XCTAssertTrue(entries.contains(IndexEntry("gender", .token(system: nil, code: "male"))))
        let march = FHIRDateTime.parse("1990-03", kind: .date)!
        XCTAssertTrue(entries.contains(IndexEntry("birthdate", .date(low: march.low, high: march.high))))
    }

    func test_observationSubjectCodeAndChoiceDate_areIndexed() throws {
        let obs = try JSONParser.parse("""
        {"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
         "subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2024-01-01"}}
        """).objectValue!
        let entries = IndexExtractor().entries(for: obs, type: "Observation")
        XCTAssertTrue(entries.contains(IndexEntry("code", .token(system: "http://loinc.org", code: "8480-6"))))
        XCTAssertTrue(entries.contains(IndexEntry("patient", .reference(type: "Patient", id: "p1", url: nil))))
        XCTAssertTrue(entries.contains { $0.parameter == "date" })
    }
}
