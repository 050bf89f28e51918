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

/// The scan that finds a stored Binary's `data` without parsing it (issue 29).
final class JSONMembersTests: XCTestCase {
    func members(_ text: String, _ names: Set<String>) -> [String: String]? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            JSONMembers.strings(in: raw, named: names).map { found in
                found.mapValues { String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0]), as: UTF8.self) }
            }
        }
    }

    /// Top-level string members are found past nested objects, arrays, numbers, literals and
    /// strings holding escaped quotes and brackets; the same names inside nested values are not.
    func test_findsTopLevelStringsOnly() {
        let text = #"""
        { "meta" : {"data":"nested","tag":[{"code":"a\"}]"}]}, "n": -1.5e3, "t":true, "z":null,
          "list":[["data"],{"x":"}"}], "contentType":"application/pdf", "data" :"QUJD" }
        """#
        XCTAssertEqual(members(text, ["data", "contentType", "absent"]), ["data": "QUJD", "contentType": "application/pdf"])
        XCTAssertEqual(members(#"{"resourceType":"Binary","data":"","id":"x"}"#, ["data"]), ["data": ""])
        XCTAssertEqual(members("{}", ["data"]), [:])
        // A member asked for whose value is not a string is not reported.
        XCTAssertEqual(members(#"{"data":{"a":"b"}}"#, ["data"]), [:])
        // Everything the scan agrees with the parser on.
        let stored = #"{"resourceType":"Binary","id":"b1","meta":{"versionId":"2"},"contentType":"text/xml","data":"PGE+PC9hPg=="}"#
        let parsed = try? JSONParser.parse(stored)
        XCTAssertEqual(members(stored, ["contentType", "data"])?["data"], parsed?["data"]?.stringValue)
    }

    /// What the scan cannot answer with a byte range is left to the parser: an escape inside a
    /// wanted string, and input that is not one object.
    func test_leavesTheRestToTheParser() {
        XCTAssertNil(members(#"{"data":"QU\/JD"}"#, ["data"]))
        XCTAssertNil(members(#"["data"]"#, ["data"]))
        XCTAssertNil(members(#"{"data":"QUJD""#, ["data"]))
        XCTAssertNil(members(#"{"a":"b" "data":"QUJD"}"#, ["data"]))
        XCTAssertNil(members(#"{"a":{"b":"c"}"#, ["data"]))
        XCTAssertNil(members("", ["data"]))
        XCTAssertNil(members(#"{"data":"QUJD"} x"#, ["data"]), "one object, nothing after it")
    }

    /// An object's members and an array's elements as byte ranges, for walking to a sealed
    /// document's token without parsing the document.
    func test_membersAndElements() throws {
        let text = #"{"a":"x","_data":{"extension":[{"url":"u","valueString":"k:QUJD"}, 7 ,[1]]},"n":1}"#
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { raw in
            let members = try XCTUnwrap(JSONMembers.members(in: raw))
            XCTAssertEqual(members.map(\.key), ["a", "_data", "n"])
            XCTAssertEqual(members.map(\.string), [true, false, false])
            func text(_ r: Range<Int>, in b: UnsafeRawBufferPointer) -> String { String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self) }
            XCTAssertEqual(text(members[0].range, in: raw), "x")
            XCTAssertEqual(text(members[2].range, in: raw), "1")
            let data = UnsafeRawBufferPointer(rebasing: raw[members[1].range])
            let ext = try XCTUnwrap(JSONMembers.members(in: data)?.first)
            let list = UnsafeRawBufferPointer(rebasing: data[ext.range])
            let elements = try XCTUnwrap(JSONMembers.elements(in: list))
            XCTAssertEqual(elements.map { text($0, in: list) }, [#"{"url":"u","valueString":"k:QUJD"}"#, "7", "[1]"])
            XCTAssertEqual(JSONMembers.elements(in: UnsafeRawBufferPointer(rebasing: list[0..<0])), nil)
        }
        XCTAssertEqual(Array("[]".utf8).withUnsafeBytes { JSONMembers.elements(in: $0)?.count }, 0)
        XCTAssertNil(Array("[1,]".utf8).withUnsafeBytes { JSONMembers.elements(in: $0) })
    }
}
