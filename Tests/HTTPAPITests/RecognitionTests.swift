import Foundation
import FHIRModel
import XCTest

@testable import Sharing

/// The HR stamping counts QC pass dates and result times in days (China time) by arithmetic, not
/// by a Foundation Calendar (bench/sharing.py): the arithmetic must agree with the calendar.
final class RecognitionTests: XCTestCase {
    /// The catalogue read back from its CodeSystem finds each item by system and code, and after
    /// items are added to it.
    func test_catalogueFindsItemsFromItsCodeSystem() {
        let hb = RecognitionItem(system: "http://loinc.org", code: "718-7", display: "血红蛋白", category: .lab, validityDays: 30,
                                 scope: .province, price: 5)
        let ct = RecognitionItem(system: "urn:local:exam", code: "CT-CHEST", display: "胸部CT", category: .imaging, validityDays: 180,
                                 scope: .city, price: 300)
        let read = RecognitionCatalogue(codeSystem: RecognitionCatalogue([hb, ct]).codeSystem)
        XCTAssertEqual(read.item(system: "http://loinc.org", code: "718-7"), hb)
        XCTAssertEqual(read.item(system: "urn:local:exam", code: "CT-CHEST"), ct)
        XCTAssertNil(read.item(system: "urn:local:exam", code: "718-7"))
        XCTAssertEqual(read.item(in: .object(JSONObject([("coding", .array([
            .object(JSONObject([("system", .string("urn:other")), ("code", .string("1"))])),
            .object(JSONObject([("system", .string("http://loinc.org")), ("code", .string("718-7"))])),
        ]))]))), hb)
        var added = read
        let alt = RecognitionItem(system: "http://loinc.org", code: "1742-6", display: "ALT", category: .lab, validityDays: 30,
                                  scope: .province, price: 6)
        added.items[RecognitionCatalogue.key(alt.system, alt.code)] = alt
        XCTAssertEqual(added.item(system: "http://loinc.org", code: "1742-6"), alt)
    }

    func test_daysAgreeWithTheCalendarInChinaTime() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
        // From 1901 to 2099, every 7 h 13 min (all hours of the day, every day of the month over time).
        var t: Int64 = -2_177_452_800
        while t < 4_102_444_800 {
            let c = calendar.dateComponents([.year, .month, .day], from: Date(timeIntervalSince1970: TimeInterval(t)))
            let text = String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
            let micros = t * 1_000_000
            XCTAssertEqual(QualityPass.day(micros), text, "\(t)")
            XCTAssertEqual(QualityPass.dayNumber(text), QualityPass.dayNumber(micros), text)
            t += 7 * 3600 + 13 * 60 + 86_400 * 3
        }
        XCTAssertNil(QualityPass.dayNumber("2026-13-01"))
        XCTAssertNil(QualityPass.dayNumber("2026-1-011"))
        XCTAssertNil(QualityPass.dayNumber("20260101"))
    }

    func test_passWindowsAreInclusiveDaysInChinaTime() {
        let item = RecognitionItem(system: "http://loinc.org", code: "718-7", display: "血红蛋白", category: .lab, validityDays: 30,
                                   scope: .province, price: nil)
        let passes = ["org-a": ["http://loinc.org": ["718-7": [
            RecognitionMarks.Window(from: QualityPass.dayNumber("2026-01-01")!, to: QualityPass.dayNumber("2026-02-28")!, scope: .city),
            RecognitionMarks.Window(from: QualityPass.dayNumber("2026-02-01")!, to: QualityPass.dayNumber("2026-02-28")!, scope: .national),
        ]]]]
        func at(_ text: String) -> Int64 { FHIRDateTimeProbe.micros(text) }
        // 2026-02-28T23:30+08:00 is still the 28th in China (15:30 UTC); 2026-03-01T00:30+08:00 is not.
        XCTAssertEqual(RecognitionMarks.scope(item, facility: "org-a", passes: passes, at: at("2026-02-28T15:30:00Z")), .province)
        XCTAssertNil(RecognitionMarks.scope(item, facility: "org-a", passes: passes, at: at("2026-02-28T16:30:00Z")))
        XCTAssertEqual(RecognitionMarks.scope(item, facility: "org-a", passes: passes, at: at("2026-01-15T08:00:00+08:00")), .city)
        XCTAssertEqual(RecognitionMarks.scope(item, facility: "org-a", passes: passes, at: at("2025-12-31T16:00:00Z")), .city)
        XCTAssertNil(RecognitionMarks.scope(item, facility: "org-a", passes: passes, at: at("2025-12-31T15:59:59Z")))
        XCTAssertNil(RecognitionMarks.scope(item, facility: "org-b", passes: passes, at: at("2026-01-15T08:00:00+08:00")))
    }
}

enum FHIRDateTimeProbe {
    static func micros(_ text: String) -> Int64 {
        let f = ISO8601DateFormatter()
        return Int64(f.date(from: text)!.timeIntervalSince1970) * 1_000_000
    }
}
