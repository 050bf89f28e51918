@testable import Identity
import XCTest

final class ResidentIDTests: XCTestCase {
    func test_standardExample_isValid_andYieldsBirthDateAndSex() throws {
        let id = try ResidentID("11010519491231002X")
        XCTAssertEqual(id.birthDate, "1949-12-31")
        XCTAssertEqual(id.gender, "female")   // sequence 002: even
        XCTAssertEqual(id.region, "110105")
    }

    func test_lowercaseX_andSpaces_areNormalised() throws {
        XCTAssertEqual(try ResidentID("110105 19491231 002x").value, "11010519491231002X")
    }

    func test_anyOneDigitChanged_failsTheCheck() {
        let good = Array("11010519491231002X")
        for i in 0..<17 {
            var bad = good
            bad[i] = bad[i] == "1" ? "2" : "1"
            XCTAssertThrowsError(try ResidentID(String(bad)), "digit \(i) changed") { error in
                guard case ResidentID.Problem.checkCharacter = error as! ResidentID.Problem else {
                    // A changed birth-date digit may also make the date impossible.
                    XCTAssertEqual(error as? ResidentID.Problem, .birthDate)
                    return
                }
            }
        }
        XCTAssertThrowsError(try ResidentID("110105194912310021"))
    }

    func test_fifteenDigits_upgradeToEighteen() throws {
        XCTAssertEqual(try ResidentID("110105491231002").value, "11010519491231002X")
    }

    func test_impossibleDates_andWrongLengths_areRejected() {
        XCTAssertThrowsError(try ResidentID("110105194902300010")) { XCTAssertEqual($0 as? ResidentID.Problem, .birthDate) }
        XCTAssertThrowsError(try ResidentID("1101051949123100")) { XCTAssertEqual($0 as? ResidentID.Problem, .length(16)) }
        XCTAssertThrowsError(try ResidentID("11010519491231002Y")) { XCTAssertEqual($0 as? ResidentID.Problem, .characters) }
    }
}
