@testable import Access
import FHIRModel
import Foundation
import XCTest

/// Sensitive categories: which codes label a record, how the label is written, and how a
/// resident's Consent opts a category in for one facility.
final class SensitiveCategoriesTests: XCTestCase {
    func object(_ text: String) throws -> JSONObject {
        guard case .object(let o) = try JSONParser.parse(text) else { throw XCTSkip("not an object") }
        return o
    }

    func condition(_ system: String, _ code: String) throws -> JSONObject {
        try object(#"{"resourceType":"Condition","code":{"coding":[{"system":"\#(system)","code":"\#(code)"}]},"subject":{"reference":"Patient/p"}}"#)
    }

    func test_codesInACategory_labelTheRecord_atAnyDepth() throws {
        let c = SensitiveCategories.defaults
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", "F32.9")), ["PSY"])
        XCTAssertEqual(c.labels(for: try condition("urn:oid:2.16.156.10011.2.3.3.11", "B20.001")), ["HIV"])
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10-cn", "A53.900")), ["STD"])
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", "O04")), ["SEX"])
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", "J45.9")), [], "asthma is not sensitive")
        XCTAssertEqual(c.labels(for: try condition("http://snomed.info/sct", "F32")), [], "the prefix counts only in its system")
        // Anywhere in the resource: an Encounter's reason.
        let encounter = try object(#"{"resourceType":"Encounter","reasonCode":[{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"Z21"}]}]}"#)
        XCTAssertEqual(c.labels(for: encounter), ["HIV"])
    }

    func test_aCategoryIsRecognisedByMeaning_notBySpelling() throws {
        let c = SensitiveCategories.defaults
        // Case, space, the ICD-10 variants and OIDs, SNOMED CT.
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", " b20.1 ")), ["HIV"])
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10-cm", "F32.A")), ["PSY"])
        XCTAssertEqual(c.labels(for: try condition("urn:oid:2.16.840.1.113883.6.3", "A51.0")), ["STD"])
        XCTAssertEqual(c.labels(for: try condition("HTTP://hl7.org/fhir/sid/icd-10/", "O04")), ["SEX"])
        XCTAssertEqual(c.labels(for: try condition("http://snomed.info/sct", "86406008")), ["HIV"])
        XCTAssertEqual(c.labels(for: try condition("http://snomed.info/sct", "195967001")), [], "asthma (SNOMED) is not sensitive")
        // A diagnosis given as text only, in Chinese or English.
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"艾滋病（HIV感染）"}}"#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"Major depressive episode"}}"#)), ["PSY"])
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"获得性免疫缺陷综合征"}}"#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"支气管哮喘"}}"#)), [])
        // A local code the list does not know: its text decides. A code it knows: the code decides.
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"coding":[{"system":"urn:oid:1.2.156.999.1.9","code":"L-123"}],"text":"HIV感染"}}"#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J45"}],"text":"哮喘（HIV阴性）"}}"#)), [])
        let off = SensitiveCategories(categories: SensitiveCategories.defaults.categories, textMatching: false)
        XCTAssertEqual(off.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"艾滋病"}}"#)), [], "text matching off")
        // A positive test result; a negative one is not; a viral load tells by itself.
        func observation(_ loinc: String, _ value: String) throws -> JSONObject {
            try object(#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"\#(loinc)"}]},\#(value)}"#)
        }
        XCTAssertEqual(c.labels(for: try observation("7917-8", #""valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"10828004"}]}"#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try observation("7917-8", #""valueString":"阳性(+)""#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try observation("7917-8", #""valueString":"阴性""#)), [])
        XCTAssertEqual(c.labels(for: try observation("7917-8", #""valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"260385009"}]}"#)), [])
        XCTAssertEqual(c.labels(for: try observation("7917-8", #""valueString":"non-reactive""#)), [])
        XCTAssertEqual(c.labels(for: try observation("20507-0", #""interpretation":[{"coding":[{"code":"POS"}]}]"#)), ["STD"])
        XCTAssertEqual(c.labels(for: try observation("20447-9", #""valueQuantity":{"value":40}"#)), ["HIV"])
        XCTAssertEqual(c.labels(for: try observation("2345-7", #""valueString":"positive""#)), [], "glucose is no category's test")
    }

    func test_aTermIsFoundAnywhereInAFreeText() throws {
        // Any free text of the record: a note names the category, in any case.
        let c = SensitiveCategories.defaults
        let noted = try object(#"{"resourceType":"Observation","status":"final","code":{"text":"血常规"},"note":[{"text":"Patient reports known HIV infection"}]}"#)
        XCTAssertEqual(c.labels(for: noted), ["HIV"])
        let plain = try object(#"{"resourceType":"Observation","status":"final","code":{"text":"血常规"},"note":[{"text":"复查，结果正常"}]}"#)
        XCTAssertEqual(c.labels(for: plain), [])
        let cut = try object(#"{"resourceType":"Observation","status":"final","code":{"text":"血常规"},"note":[{"text":"艾草 h i v"}]}"#)
        XCTAssertEqual(c.labels(for: cut), [], "a term's first character, or its letters apart, are not the term")
        let end = try object(#"{"resourceType":"Condition","code":{"text":"疑似艾滋"}}"#)
        XCTAssertEqual(c.labels(for: end), ["HIV"], "at the end of the text")
        // Another spelling of the same characters: a CJK compatibility ideograph (U+F967 for 不),
        // an accent as a combining mark in an operator's term.
        let compatibility = try object(#"{"resourceType":"Condition","code":{"text":"原发性\#u{F967}孕"}}"#)
        XCTAssertEqual(c.labels(for: compatibility), ["SEX"])
        let accented = SensitiveCategories(categories: [.init(label: "X", name: "x", codes: [], terms: ["névrose"])])
        XCTAssertEqual(accented.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"ne\#u{301}vrose"}}"#)), ["X"])
        XCTAssertEqual(accented.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"nevrose"}}"#)), [])
        XCTAssertFalse(SensitiveCategories.isPlain("\u{F967}"))
        XCTAssertTrue(SensitiveCategories.isPlain("hiv 艾滋病（阳性），复查。"), "ASCII, ideographs, fullwidth and CJK punctuation")
    }

    func test_aResultsOrANotesWords_nameItsCategory_unlessTheyOnlyReportNegatives() throws {
        let c = SensitiveCategories.defaults
        // A LIS that sends a finding as text under its own code; a note on a record coded plainly.
        let labelled = [
            #"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:lis:local","code":"L77"}]},"valueString":"HIV感染（确证阳性）"}"#,
            #"{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J18.9"}]},"note":[{"text":"患者为HIV感染者，注意防护"}]}"#,
            #"{"resourceType":"Observation","status":"final","code":{"text":"血常规"},"valueQuantity":{"value":4.5},"note":[{"text":"抑郁发作，服药中"}]}"#,
            #"{"resourceType":"Observation","status":"final","code":{"text":"检验组合"},"component":[{"code":{"text":"项目3"},"valueString":"HIV感染"}]}"#,
            #"{"resourceType":"QuestionnaireResponse","status":"completed","item":[{"linkId":"1","item":[{"linkId":"1.1","answer":[{"valueString":"确诊HIV感染"}]}]}]}"#,
        ]
        XCTAssertEqual(c.labels(for: try object(labelled[0])), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(labelled[1])), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(labelled[2])), ["PSY"])
        XCTAssertEqual(c.labels(for: try object(labelled[3])), ["HIV"])
        XCTAssertEqual(c.labels(for: try object(labelled[4])), ["HIV"])
        let plain = [
            #"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:lis:local","code":"L77"}]},"valueString":"HIV抗体阴性"}"#,
            #"{"resourceType":"Observation","status":"final","code":{"text":"血常规"},"valueString":"未见异常","note":[{"text":"复查"}]}"#,
            // A note that only reports negatives (a pre-operative screening) is about neither category.
            #"{"resourceType":"Condition","code":{"text":"术前检查"},"note":[{"text":"HIV抗体阴性，梅毒阴性"}]}"#,
        ]
        for text in plain { XCTAssertEqual(c.labels(for: try object(text)), [], text) }
    }

    /// A second outside probe shared HIV documents without opt-in: a document type's text beside a
    /// LOINC code, an attachment titled without its content type, a Composition's section title,
    /// and spellings typed with a Chinese input method (fullwidth, traditional, dotted).
    func test_aDocumentsOwnWords_andOtherSpellings_nameItsCategory() throws {
        let c = SensitiveCategories.defaults
        let documents = [
            #"{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}],"text":"HIV感染 随访记录"}}"#,
            #"{"resourceType":"DocumentReference","status":"current","category":[{"coding":[{"system":"http://loinc.org","code":"11488-4"}],"text":"艾滋病随访"}]}"#,
            #"{"resourceType":"DocumentReference","status":"current","description":"HIV感染 随访记录"}"#,
            #"{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"title":"HIV感染 随访记录","language":"zh"}}]}"#,
            #"{"resourceType":"Composition","status":"final","type":{"text":"出院小结"},"date":"2026-12-01","author":[{"display":"x"}],"title":"出院小结","section":[{"title":"诊断","section":[{"title":"HIV感染"}]}]}"#,
            #"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"血清学"},"conclusion":"HIV抗体阳性"}"#,
            #"{"resourceType":"Composition","status":"final","type":{"text":"出院小结"},"date":"2026-12-01","author":[{"display":"x"}],"title":"出院小结","section":[{"title":"诊断","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>HIV感染</p></div>"}}]}"#,
        ]
        for text in documents { XCTAssertEqual(c.labels(for: try object(text)), ["HIV"], text) }
        for spelling in ["ＨＩＶ感染", "Ｈiv", "H.I.V.", "愛滋病", "人類免疫缺陷病毒", "A·I·D·S", "A・I・D・S"] {
            XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"\#(spelling)"}}"#)), ["HIV"], spelling)
        }
        XCTAssertEqual(c.labels(for: try object(#"{"resourceType":"Condition","code":{"text":"抑鬱發作"}}"#)), ["PSY"])
        // Their plain counterparts stay plain.
        let plain = [#"{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}],"text":"出院小结"},"description":"高血压随访 2.5 mmol/L"}"#,
                     #"{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"title":"随访记录","language":"zh"}}]}"#,
                     #"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"血常规"},"conclusion":"未见异常"}"#,
                     // A pre-operative screening's negatives are about neither category.
                     #"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"术前八项"},"conclusion":"HIV抗体阴性，梅毒阴性"}"#,
                     #"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"screen"},"conclusion":"HIV non-reactive"}"#]
        for text in plain { XCTAssertEqual(c.labels(for: try object(text)), [], text) }
        let mixed = try object(#"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"术前八项"},"conclusion":"HIV抗体阳性，梅毒阴性"}"#)
        XCTAssertTrue(c.labels(for: mixed).contains("HIV"))
        XCTAssertEqual(SensitiveCategories.folded("ＨＩＶ．阳性"), "HIV阳性")
        // Nothing to fold, not rebuilt: fullwidth punctuation, decimals, sentences.
        for text in ["血常规，（复查）：正常。", "Hb 2.5 mmol/L. Normal.", "血常规"] {
            XCTAssertFalse(SensitiveCategories.needsFolding(text), text)
        }
    }

    func test_labelled_addsEachLabelOnce_andKeepsTheClientsLabels() throws {
        let c = SensitiveCategories.defaults
        var resource = try condition("http://hl7.org/fhir/sid/icd-10", "F20.0")
        resource["meta"] = .object(try object(#"{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}"#))
        let once = c.labelled(resource)
        let twice = c.labelled(once)
        XCTAssertEqual(once, twice)
        let codes = (once["meta"]?["security"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue }
        XCTAssertEqual(codes, ["R", "PSY"])
        XCTAssertEqual(c.labels(ofStored: once), ["PSY"])
        let plain = try condition("http://hl7.org/fhir/sid/icd-10", "J45.9")
        XCTAssertEqual(c.labelled(plain), plain)
    }

    func test_operatorsList_replacesTheDefaults() throws {
        let file = NSTemporaryDirectory() + "sensitive-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try #"{"categories":[{"label":"ETH","name":"substance use","codes":[{"system":"http://hl7.org/fhir/sid/icd-10","prefix":"F1"}]}]}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let c = try SensitiveCategories.load(path: file)
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", "F10.2")), ["ETH"])
        XCTAssertEqual(c.labels(for: try condition("http://hl7.org/fhir/sid/icd-10", "F32.9")), [])
        XCTAssertEqual(c.labels, ["ETH"])
    }

    func test_consentOptsInALabel_forOneFacility_andADenyWins() throws {
        let now = FHIRDateTime.parse("2026-06-01T00:00:00Z", kind: .dateTime)!.low
        func consent(_ provision: String) throws -> JSONObject {
            try object(#"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"provision":\#(provision)}"#)
        }
        let label = #""securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]"#
        let toB = try consent(#"{"type":"permit","actor":[{"reference":{"reference":"Organization/b"}}],\#(label)}"#)
        XCTAssertEqual(ConsentEvaluator.optIns([toB], facility: "b", type: "Condition", now: now), ["PSY"])
        XCTAssertEqual(ConsentEvaluator.optIns([toB], facility: "c", type: "Condition", now: now), [])
        // An opt-in says nothing about sharing in general.
        XCTAssertEqual(ConsentEvaluator.verdict([toB], facility: "b", type: "Condition", now: now), .none)
        let refusal = try consent(#"{"type":"deny",\#(label)}"#)
        XCTAssertEqual(ConsentEvaluator.optIns([toB, refusal], facility: "b", type: "Condition", now: now), [])
        // Limited to some record types by class.
        let conditionsOnly = try consent(#"{"type":"permit","class":[{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}],\#(label)}"#)
        XCTAssertEqual(ConsentEvaluator.optIns([conditionsOnly], facility: "b", type: "Condition", now: now), ["PSY"])
        XCTAssertEqual(ConsentEvaluator.optIns([conditionsOnly], facility: "b", type: "MedicationRequest", now: now), [])
        let denyObservations = try consent(#"{"type":"deny","class":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}]}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([denyObservations], facility: "b", type: "Observation", now: now), .deny)
        XCTAssertEqual(ConsentEvaluator.verdict([denyObservations], facility: "b", type: "Condition", now: now), .none)
    }

    /// The prefix table finds exactly what comparing the code with every prefix finds (as Swift
    /// compares strings), for codes at, around and between the prefixes, ASCII or not.
    func test_prefixLookup_findsWhatAScanFinds() {
        let prefixes = ["F", "F1", "B20", "B2", "Z21", "7917-8", "", "É", "E\u{301}X", "张"]
        var table = SensitiveCategories.Prefixes<Int>()
        for (i, p) in prefixes.enumerated() { table.add(p, i) }
        let codes = ["F", "F10.2", "F1", "B20.1", "B2", "B", "Z21", "Z2", "7917-8", "7917-80", "7917", "", "É1", "E\u{301}1",
                     "E\u{301}X9", "\u{C9}X", "张三", "F\u{301}", "b20", "张"]
        for code in codes {
            var found: [Int] = []
            table.forEach(prefixOf: code) { found.append($0) }
            let scanned = prefixes.indices.filter { code.hasPrefix(prefixes[$0]) }
            XCTAssertEqual(found.sorted(), scanned, code)
        }
    }
}
