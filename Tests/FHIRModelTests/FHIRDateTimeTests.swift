import FHIRModel
import XCTest

final class FHIRDateTimeTests: XCTestCase {
    func test_precisionRanges() throws {
        let month = try XCTUnwrap(FHIRDateTime.parse("2024-02", kind: .date))
        let day1 = try XCTUnwrap(FHIRDateTime.parse("2024-02-01", kind: .date))
        let march = try XCTUnwrap(FHIRDateTime.parse("2024-03-01", kind: .date))
        XCTAssertEqual(month.low, day1.low)
        XCTAssertEqual(month.high, march.low, "February 2024 ends where March starts (leap year)")
        let year = try XCTUnwrap(FHIRDateTime.parse("2024", kind: .dateTime))
        XCTAssertEqual(year.high - year.low, 366 * 86_400_000_000)
        let second = try XCTUnwrap(FHIRDateTime.parse("2024-03-05T10:20:30+08:00", kind: .dateTime))
        let utc = try XCTUnwrap(FHIRDateTime.parse("2024-03-05T02:20:30Z", kind: .instant))
        XCTAssertEqual(second.low, utc.low)
        XCTAssertEqual(second.high - second.low, 1_000_000)
        let millis = try XCTUnwrap(FHIRDateTime.parse("2024-03-05T02:20:30.123Z", kind: .instant))
        XCTAssertEqual(millis.low - utc.low, 123_000)
        XCTAssertEqual(millis.high - millis.low, 1_000)
    }

    func test_invalidCalendarValues_areRejected() {
        for bad in ["1990-13-45", "2023-02-29", "2024-04-31", "2024-1-01", "24-01-01", "2024-01-01T25:00:00Z",
                    "2024-01-01T10:00:00", "2024-01-01T10:00Z", "2024-01-01 10:00:00Z", "2024-01-01T10:00:00+15:00"] {
            XCTAssertNil(FHIRDateTime.parse(bad, kind: .dateTime), bad)
        }
        XCTAssertNotNil(FHIRDateTime.parse("2024-02-29", kind: .date))
        XCTAssertNil(FHIRDateTime.parse("2024-02-29", kind: .instant), "an instant needs a time and zone")
        XCTAssertNil(FHIRDateTime.parse("2024-02-29T10:00:00Z", kind: .date), "a date has no time")
    }

    func test_formatting() {
        let t = FHIRDateTime.parse("2024-03-05T02:20:30.123Z", kind: .instant)!
        XCTAssertEqual(FHIRDateTime.formatInstant(micros: t.low), "2024-03-05T02:20:30.123Z")
        XCTAssertEqual(FHIRDateTime.formatHTTPDate(micros: t.low), "Tue, 05 Mar 2024 02:20:30 GMT")
        XCTAssertEqual(FHIRDateTime.formatHTTPDate(micros: 0), "Thu, 01 Jan 1970 00:00:00 GMT")
    }
}
