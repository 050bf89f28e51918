import FHIRModel
@testable import Identity
import XCTest

/// Each comparison level, on pairs that must land in it.
final class ComparisonTests: XCTestCase {
    func features(_ json: String) throws -> PatientFeatures {
        guard case .object(let o) = try JSONParser.parse(json) else { throw XCTSkip("not an object") }
        return PatientFeatures(patient: o)
    }

    func patient(family: String, given: String, birth: String? = nil, id: String? = nil, phone: String? = nil) -> String {
        var members = [#""resourceType":"Patient""#, #""name":[{"family":"\#(family)","given":["\#(given)"]}]"#]
        if let birth { members.append(#""birthDate":"\#(birth)""#) }
        if let id { members.append(#""identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"\#(id)"}]"#) }
        if let phone { members.append(#""telecom":[{"system":"phone","value":"\#(phone)"}]"#) }
        return "{" + members.joined(separator: ",") + "}"
    }

    func levels(_ a: String, _ b: String) throws -> [ComparisonField: String] {
        let c = Comparator.compare(try features(a), try features(b))
        return Dictionary(uniqueKeysWithValues: c.levels.map { ($0.key, $0.key.levels[$0.value]) })
    }

    func test_nameLevels_exactHomophoneTonelessTypoDifferent() throws {
        XCTAssertEqual(try levels(patient(family: "张", given: "伟"), patient(family: "张", given: "伟"))[.given], "exact")
        // 章 and 张 are both zhāng: a homophone, pinyin level.
        XCTAssertEqual(try levels(patient(family: "张", given: "伟"), patient(family: "章", given: "伟"))[.family], "pinyin")
        // 伟 wěi and 维 wéi differ only in tone.
        XCTAssertEqual(try levels(patient(family: "张", given: "伟"), patient(family: "张", given: "维"))[.given], "toneless")
        XCTAssertEqual(try levels(patient(family: "Smith", given: "Jonathan"), patient(family: "Smith", given: "Jonathon"))[.given], "jw92")
        XCTAssertEqual(try levels(patient(family: "Smith", given: "Dwayne"), patient(family: "Smith", given: "Duane"))[.given], "jw80")
        XCTAssertEqual(try levels(patient(family: "张", given: "伟"), patient(family: "李", given: "娜"))[.family], "different")
    }

    func relatives(_ a: String, _ b: String) throws -> Bool {
        Comparator.mayBeRelatives(Comparator.compare(try features(a), try features(b)))
    }

    func test_twinsNames_areDifferentNames_butAWrongPinyinPickIsNot() throws {
        // Twins 子涵 and 子轩 share a household and a birth date; their names differ in a syllable.
        XCTAssertTrue(try relatives(patient(family: "张", given: "子涵", birth: "2015-03-02", phone: "13800000001"),
                                    patient(family: "张", given: "子轩", birth: "2015-03-02", phone: "13800000001")))
        // 涵 and 晗 read hán alike: one child written two ways.
        XCTAssertFalse(try relatives(patient(family: "张", given: "子涵"), patient(family: "张", given: "子晗")))
        // Latin-script spellings vary too much to tell names apart by letters (FEBRL's Dwayne/Duane).
        XCTAssertFalse(try relatives(patient(family: "Smith", given: "Dwayne"), patient(family: "Smith", given: "Duane")))
        // The same resident ID number is one person whatever the names say.
        XCTAssertFalse(try relatives(patient(family: "张", given: "子涵", id: "11010120150302003X"),
                                     patient(family: "张", given: "子轩", id: "11010120150302003X")))
        // Twins' numbers differ in the sequence code only: one digit apart is no evidence here.
        XCTAssertTrue(try relatives(patient(family: "张", given: "子涵", id: "11010120150302003X"),
                                    patient(family: "张", given: "子轩", id: "11010120150302005X")))
    }

    func test_swappedFamilyAndGiven_compareAsExact() throws {
        let l = try levels(patient(family: "Wei", given: "Zhang"), patient(family: "Zhang", given: "Wei"))
        XCTAssertEqual(l[.family], "exact")
        XCTAssertEqual(l[.given], "exact")
    }

    func test_birthDateLevels() throws {
        func level(_ a: String, _ b: String) throws -> String? {
            try levels(patient(family: "x", given: "y", birth: a), patient(family: "x", given: "y", birth: b))[.birthDate]
        }
        XCTAssertEqual(try level("1990-03-12", "1990-03-12"), "exact")
        XCTAssertEqual(try level("1990-03-12", "1990-12-03"), "transposed")
        XCTAssertEqual(try level("1990-03-12", "1990-03-21"), "transposed")
        XCTAssertEqual(try level("1990-03-12", "1990-03-13"), "oneDigit")
        XCTAssertEqual(try level("1990-03-12", "1990-03-28"), "yearMonth")
        XCTAssertEqual(try level("1990-03-12", "1985-07-01"), "different")
    }

    func test_residentIDLevels_typoStillCounts() throws {
        let a = patient(family: "x", given: "y", id: "11010519491231002X")
        XCTAssertEqual(try levels(a, a)[.residentID], "exact")
        XCTAssertEqual(try levels(a, patient(family: "x", given: "y", id: "11010519491231003X"))[.residentID], "typo")
        XCTAssertEqual(try levels(a, patient(family: "x", given: "y", id: "11010519941231002X"))[.residentID], "typo")
        XCTAssertEqual(try levels(a, patient(family: "x", given: "y", id: "440301199001011234"))[.residentID], "different")
    }

    func test_phones_compareWithoutCountryPrefix() throws {
        let l = try levels(patient(family: "x", given: "y", phone: "+86 138-0013-8000"), patient(family: "x", given: "y", phone: "13800138000"))
        XCTAssertEqual(l[.phone], "exact")
    }

    func test_jaroWinkler_knownValues() {
        XCTAssertEqual(JaroWinkler.similarity("martha", "marhta"), 0.961, accuracy: 0.001)
        XCTAssertEqual(JaroWinkler.similarity("dwayne", "duane"), 0.84, accuracy: 0.001)
        XCTAssertEqual(JaroWinkler.similarity("dixon", "dicksonx"), 0.813, accuracy: 0.001)
        XCTAssertEqual(JaroWinkler.similarity("abc", "xyz"), 0)
    }

    func test_scorer_commonNameAgreementWeighsLessThanRareName() {
        var rules = MatchRules.defaults
        rules.termFrequencies = ["given": ["wei": 0.05, "nana": 0.0001]]
        let scorer = MatchScorer(rules)
        var common = PairComparison(); common.levels = [.given: 0]; common.given = "wei"
        var rare = PairComparison(); rare.levels = [.given: 0]; rare.given = "nana"
        XCTAssertLessThan(scorer.score(common).weight, scorer.score(rare).weight)
    }
}
