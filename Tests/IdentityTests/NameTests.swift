@testable import Identity
import XCTest

final class NameTests: XCTestCase {
    func test_surnameReadings_overrideTheCommonReading() {
        XCTAssertEqual(Pinyin.syllables("单", asSurname: true), ["shàn"])
        XCTAssertEqual(Pinyin.syllables("单"), ["dān"])
        XCTAssertEqual(Pinyin.syllables("曾", asSurname: true), ["zēng"])
        XCTAssertEqual(Pinyin.syllables("解", asSurname: true), ["xiè"])
        XCTAssertEqual(Pinyin.syllables("区", asSurname: true), ["ōu"])
        XCTAssertEqual(Pinyin.syllables("仇", asSurname: true), ["qiú"])
        XCTAssertEqual(Pinyin.syllables("朴", asSurname: true), ["piáo"])
        XCTAssertEqual(Pinyin.syllables("查", asSurname: true), ["zhā"])
        XCTAssertEqual(Pinyin.syllables("覃", asSurname: true), ["qín"])
        XCTAssertEqual(Pinyin.syllables("长孙", asSurname: true), ["zhǎng", "sūn"])
    }

    func test_umlaut_staysDistinct_whenTonesAreDropped() {
        XCTAssertEqual(Pinyin.syllables("吕").map(Pinyin.toneless), ["lv"])
        XCTAssertEqual(Pinyin.syllables("卢").map(Pinyin.toneless), ["lu"])
        XCTAssertEqual(Pinyin.toneless("zhāng"), "zhang")
    }

    func test_fullNames_splitOnCompoundSurnames() {
        XCTAssertEqual(Pinyin.splitFullName("欧阳娜娜").family, "欧阳")
        XCTAssertEqual(Pinyin.splitFullName("欧阳娜娜").given, "娜娜")
        XCTAssertEqual(Pinyin.splitFullName("张三").family, "张")
        let n = NameFeature(family: "司马相如", given: [], text: nil)!
        XCTAssertEqual(n.family, "司马")
        XCTAssertEqual(n.givenToneless, "xiangru")
    }

    func test_latinNames_foldCaseAndAccents_andCompareWithPinyin() {
        let latin = NameFeature(family: "ZHANG", given: ["Wei"], text: nil)!
        let han = NameFeature(family: "张", given: ["伟"], text: nil)!
        XCTAssertEqual(latin.familyToneless, han.familyToneless)
        XCTAssertEqual(latin.givenToneless, han.givenToneless)
        XCTAssertEqual(NameFeature(family: "Müller-Lüdenscheidt", given: ["José"], text: nil)!.family, "mullerludenscheidt")
    }

    func test_newbornPlaceholders_areRecognised() {
        for (family, given) in [("张", "某之子"), ("李", "之女"), ("王", "男婴"), ("", "新生儿"), ("Baby", "Boy")] {
            XCTAssertTrue(NameFeature(family: family, given: [given], text: nil)!.isPlaceholder, family + given)
        }
        XCTAssertFalse(NameFeature(family: "张", given: ["伟"], text: nil)!.isPlaceholder)
    }
}
