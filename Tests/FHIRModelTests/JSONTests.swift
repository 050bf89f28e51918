import FHIRModel
import XCTest

final class JSONTests: XCTestCase {
    func test_roundTrip_keepsMemberOrderAndDecimalPrecision() throws {
        let text = #"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mmol/L"},"b":[true,false,null],"a":-0.0e+10}"#
        let json = try JSONParser.parse(text)
        XCTAssertEqual(JSONWriter.string(json), text)
        XCTAssertEqual(json["valueQuantity"]?["value"]?.numberText, "1.50")
    }

    func test_stringsWithEscapesAndChinese_roundTrip() throws {
        let json = try JSONParser.parse(#"{"s":"张伟\n\"引号\" \u00e9 \ud83d\ude00 \\ /"}"#)
        XCTAssertEqual(json["s"]?.stringValue, "张伟\n\"引号\" é 😀 \\ /")
        XCTAssertEqual(try JSONParser.parse(JSONWriter.string(json)), json)
    }

    /// The exact bytes stored (and hashed into the audit chain): plain strings copied as they are,
    /// quotes, backslashes and control characters escaped, everything else (Chinese, "/") kept.
    func test_writer_escapesExactlyWhatJSONRequires() {
        let cases: [(String, String)] = [
            ("Patient/123", #""Patient/123""#),
            ("张三", #""张三""#),
            ("", #""""#),
            ("a\"b\\c", #""a\"b\\c""#),
            ("x\ny\rz\t", #""x\ny\rz\t""#),
            ("\u{01}\u{1f}end", #""\u0001\u001fend""#),
            ("\u{7f}/é", "\"\u{7f}/é\""),
        ]
        for (value, expected) in cases {
            XCTAssertEqual(JSONWriter.string(.string(value)), expected, "for \(value.debugDescription)")
        }
        XCTAssertEqual(JSONWriter.string(.array([.bool(true), .bool(false), .null])), "[true,false,null]")
    }

    func test_duplicateMemberNames_areRejected() {
        XCTAssertThrowsError(try JSONParser.parse(#"{"id":"a","id":"b"}"#)) { error in
            XCTAssertTrue((error as? JSONParseError)?.message.contains("Duplicate member name 'id'") ?? false)
        }
    }

    func test_syntaxErrors_reportLineAndColumn() {
        XCTAssertThrowsError(try JSONParser.parse("{\n  \"a\": 01\n}")) { error in
            let e = error as? JSONParseError
            XCTAssertEqual(e?.line, 2)
        }
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"unterminated", "tru", "1.", "\"\\x\"", "{\"a\":1}x", "\"\u{01}\""] {
            XCTAssertThrowsError(try JSONParser.parse(bad), bad)
        }
    }

    func test_deepNesting_isRejectedNotCrashing() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertThrowsError(try JSONParser.parse(deep))
    }

    func test_unpairedSurrogate_isRejected() {
        XCTAssertThrowsError(try JSONParser.parse(#""\ud83d""#))
    }
}
