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

    func test_filteredPaths_takeOnlyTheirValues_andRepeatedElementsAreAllIndexed() throws {
        let patient = try JSONParser.parse("""
        {"resourceType":"Patient","telecom":[{"system":"phone","value":"13800138000"},{"system":"email","value":"li@example.cn"},
         {"system":"phone","value":"028-1234"}],"name":[{"family":"李","given":["小","龙"]}]}
        """).objectValue!
        let entries = IndexExtractor().entries(for: patient, type: "Patient")
        XCTAssertEqual(Set(entries.filter { $0.parameter == "phone" }.map(\.value)),
                       [.token(system: "phone", code: "13800138000"), .token(system: "phone", code: "028-1234")])
        XCTAssertEqual(entries.filter { $0.parameter == "email" }.map(\.value), [.token(system: "email", code: "li@example.cn")])
        XCTAssertEqual(Set(entries.filter { $0.parameter == "given" }.map(\.value)),
                       [.string("小", exact: "小"), .string("龙", exact: "龙")])
    }

    func test_normalize_foldsAsFoundationDoes() {
        let samples = ["张伟", "Zhang Wei", "ZHANG", "王 Li 3号", "Éric", "ＡＢＣ", "Straße", "İstanbul", "𠀀家", "ǚ", "abc-DEF_123", "",
                       "人民路12号 B座", "São Paulo", "Ωmega", "ｶﾀｶﾅ", "互认（省级）", "血红蛋白（Ｈｂ）　、。", "Ａ\u{301}", "（é）"]
        // Every scalar of the ranges folded without Foundation, alone and beside others.
        let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x3000...0x303F, 0x4E00...0x4E20, 0xFF00...0xFF60]
        let scalars = ranges.flatMap { $0.compactMap(Unicode.Scalar.init) }
        for u in scalars {
            let one = String(Character(u))
            XCTAssertEqual(StringNormalizer.normalize("张" + one + "Ｘ"),
                           ("张" + one + "Ｘ").folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil),
                           "U+\(String(u.value, radix: 16))")
        }
        for s in samples {
            XCTAssertEqual(StringNormalizer.normalize(s),
                           s.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil), s)
        }
    }

    func test_referenceForms() {
        XCTAssertEqual(ReferenceSyntax.parse("Patient/p1"), .relative(type: "Patient", id: "p1", version: nil))
        XCTAssertEqual(ReferenceSyntax.parse("Patient/p1/_history/3"), .relative(type: "Patient", id: "p1", version: "3"))
        XCTAssertEqual(ReferenceSyntax.parse("#c1"), .contained("c1"))
        XCTAssertEqual(ReferenceSyntax.parse("urn:uuid:0b6a"), .urn("urn:uuid:0b6a"))
        XCTAssertEqual(ReferenceSyntax.parse("Patient?identifier=urn:x|1"), .conditional(type: "Patient", query: "identifier=urn:x|1"))
        XCTAssertEqual(ReferenceSyntax.parse("http://example.org/fhir/Patient/1"), .absolute("http://example.org/fhir/Patient/1"))
        for bad in ["", "Patient/", "Patient/a/b", "Patient/a/_history/", "Patient/a/_hist/2", "Nothing/1", "Patient/a b",
                    "Patient/1/_history/2/x", "Nothing?x=1", "a:b?x", "Patient/" + String(repeating: "a", count: 65)] {
            XCTAssertNil(ReferenceSyntax.parse(bad), bad)
        }
    }
}
