import FHIRModel
import XCTest

/// The byte-level text helpers agree with the Foundation operations they replace.
final class TextScanningTests: XCTestCase {
    func test_containsBytes_findsExactlyWhatRangeOfFinds() {
        let texts = ["", "a", "http://x/fhir/Patient", "Patient", "Patient/1", "urn:uuid:1", "张伟://", "::/", "ab://", "://"]
        let needles = ["://", "/fhir/", "a", "", "张", "Patient/1x"]
        for text in texts {
            for needle in needles {
                let expected = needle.isEmpty || text.range(of: needle) != nil
                XCTAssertEqual(text.containsBytes(needle), expected, "\(text) ∋ \(needle)")
                XCTAssertEqual(text.dropFirst(0).containsBytes(needle), expected, "as a Substring")
            }
        }
        // On a Substring inside a longer string: only its own bytes count.
        let whole = "abc://def"
        XCTAssertFalse(whole.dropFirst(4).containsBytes("://"))
        XCTAssertTrue(whole.dropLast(3).containsBytes("://"))
    }
}
