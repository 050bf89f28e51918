import Foundation
import XCTest
import FHIRModel

final class Base64Tests: XCTestCase {
    /// The decoder gives Foundation's bytes for every length (all three padding cases), with
    /// whitespace (MIME line breaks, spaces) placed anywhere.
    func test_decode_agreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let text = Data(bytes).base64EncodedString()
            XCTAssertEqual(Base64.decode(text), bytes, "length \(length)")
            var spaced = ""
            for (i, c) in text.enumerated() {
                if i % 7 == 3 { spaced += ["\r\n", " ", "\t", "\n"][i % 4] }
                spaced.append(c)
            }
            spaced += "\n"
            XCTAssertEqual(Base64.decode(spaced), bytes, "length \(length) with whitespace")
            if length > 0 {  // Foundation answers nil for whitespace alone; the decoder, no bytes
                XCTAssertEqual(Base64.decode(spaced).map { Data($0) }, Data(base64Encoded: spaced, options: .ignoreUnknownCharacters))
            }
        }
        let large = (0..<1_000_003).map { _ in UInt8.random(in: 0...255, using: &generator) }
        XCTAssertEqual(Base64.decode(Data(large).base64EncodedString(options: .lineLength76Characters)), large)
    }

    func test_decode_refusesWhatIsNotBase64() {
        for bad in ["a", "ab", "abc", "abcde", "a===", "ab=c", "aGVsbA==bG8h", "aGVsbA==b", "aGVs*G8h", "aGVsbG8=\u{0}", "é==="] {
            XCTAssertNil(Base64.decode(bad), bad)
        }
        XCTAssertEqual(Base64.decode(""), [])
        XCTAssertEqual(Base64.decode("aGVsbG8="), Array("hello".utf8))
        XCTAssertEqual(Base64.decode("aGVsbA==  \r\n"), Array("hell".utf8))
    }

    /// The encoder gives Foundation's text for every length (the three padding cases).
    func test_encode_agreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertEqual(Base64.encode(bytes), Data(bytes).base64EncodedString(), "length \(length)")
        }
    }

    /// Decoding into a buffer (a stored document straight into the response's buffer) gives the
    /// same bytes and count as decoding into an array, and refuses the same input.
    func test_decodeInto_agreesWithDecode() throws {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 2, 3, 4, 5, 299, 300, 301, 100_001] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for text in [Data(bytes).base64EncodedString(), Data(bytes).base64EncodedString(options: .lineLength76Characters) + "\r\n"] {
                let utf8 = Array(text.utf8)
                var out = [UInt8](repeating: 0, count: Base64.maxDecodedCount(utf8.count))
                let written = utf8.withUnsafeBytes { input in out.withUnsafeMutableBytes { Base64.decode(input, into: $0) } }
                XCTAssertEqual(written, length)
                XCTAssertEqual(Array(out.prefix(written ?? 0)), bytes)
            }
        }
        var out = [UInt8](repeating: 0, count: 16)
        XCTAssertNil(Array("abcde".utf8).withUnsafeBytes { input in out.withUnsafeMutableBytes { Base64.decode(input, into: $0) } })
    }
}
