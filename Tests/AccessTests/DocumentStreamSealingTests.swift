@testable import Access
import Crypto
import FHIRModel
import Foundation
import NIOCore
import XCTest

/// Documents sealed as streams (ADR 029): what is sealed piece by piece opens piece by piece to
/// the same bytes, and a stream altered, cut at a segment boundary, reordered or moved into
/// another stream does not open.
final class DocumentStreamSealingTests: XCTestCase {
    let protection = try! IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1"))
    let segment = IdentifierProtection.streamSegmentSize

    /// Seals `document` fed in pieces of `piece` bytes; the stored stream and its reference.
    func sealed(_ document: [UInt8], piece: Int, by protection: IdentifierProtection? = nil,
                id: String = "0123456789abcdef0123456789abcdef") -> ([UInt8], DocumentStreamReference) {
        var sealer = (protection ?? self.protection).streamSealer(id: id)
        var stored = sealer.header
        var offset = 0
        while offset < document.count {
            let end = min(document.count, offset + piece)
            if let out = sealer.add(ByteBuffer(bytes: document[offset..<end])) { stored += Array(out.readableBytesView) }
            offset = end
        }
        let (last, reference) = sealer.finish()
        return (stored + Array(last.readableBytesView), reference)
    }

    /// Opens a stored stream whole, segment by segment; nil when any segment does not open.
    func opened(_ stored: [UInt8], by protection: IdentifierProtection? = nil, id: String = "0123456789abcdef0123456789abcdef") -> [UInt8]? {
        guard let opener = (protection ?? self.protection).streamOpener(header: ByteBuffer(bytes: stored.prefix(IdentifierProtection.streamHeaderMaximum)),
                                                                        id: id) else { return nil }
        let count = opener.segments(stored: stored.count)
        var out: [UInt8] = []
        for i in 0..<count {
            let start = opener.header.count + i * opener.sealedSegmentSize
            let end = min(stored.count, start + opener.sealedSegmentSize)
            guard start < end, let plain = opener.open(ByteBuffer(bytes: stored[start..<end]), index: i, last: i == count - 1) else { return nil }
            out += Array(plain.readableBytesView)
        }
        return out
    }

    func test_documentsOfEverySizeAtSegmentEdges_openToTheSameBytes_fedInAnyPieces() {
        for size in [0, 1, segment - 1, segment, segment + 1, 3 * segment, 3 * segment + 17] {
            let document = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
            for piece in [1_000, segment, 3 * segment + 5] {
                let (stored, reference) = sealed(document, piece: piece)
                XCTAssertEqual(opened(stored), document, "size \(size), pieces of \(piece)")
                XCTAssertEqual(reference.size, size)
                XCTAssertEqual(stored.count, IdentifierProtection.sealedStreamSize(document: size, header: protection.streamSealer(id: "x").header.count))
                XCTAssertEqual(reference.sha1, Array(Insecure.SHA1.hash(data: document)))
            }
        }
    }

    func test_aStreamAlteredCutReorderedOrUnderAnotherKeyring_doesNotOpen() throws {
        let document = (0..<(4 * segment + 100)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let (stored, _) = sealed(document, piece: 10_000)
        let opener = try XCTUnwrap(protection.streamOpener(header: ByteBuffer(bytes: stored.prefix(400)), id: "0123456789abcdef0123456789abcdef"))
        let header = opener.header.count, full = opener.sealedSegmentSize

        var flipped = stored
        flipped[header + full + 5] ^= 1
        XCTAssertNil(opened(flipped), "one bit changed")
        XCTAssertNil(opened(Array(stored[..<(header + 4 * full)])), "cut at a segment boundary: the last segment is missing")
        XCTAssertNil(opened(Array(stored[..<(header + 4 * full + 50)])), "cut inside the last segment")
        var swapped = stored
        swapped.replaceSubrange((header)..<(header + full), with: stored[(header + full)..<(header + 2 * full)])
        swapped.replaceSubrange((header + full)..<(header + 2 * full), with: stored[header..<(header + full)])
        XCTAssertNil(opened(swapped), "two segments swapped")
        // A segment of another stream (same key, its own salt) does not open in this one.
        let (other, _) = sealed(document, piece: 10_000)
        var moved = stored
        moved.replaceSubrange((header + full)..<(header + 2 * full), with: other[(header + full)..<(header + 2 * full)])
        XCTAssertNil(opened(moved), "a segment moved from another stream")
        XCTAssertNil(opened(stored, by: try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1"))), "another keyring")
        XCTAssertNil(opened(stored, id: "fedcba9876543210fedcba9876543210"), "a whole stream in another stream's place")
        XCTAssertEqual(opened(stored), document)
    }

    func test_aStreamsToken_namesItOnlyToItsKeyring_andIsNoDocumentOrIdentifier() throws {
        let reference = DocumentStreamReference(id: "0123456789abcdef0123456789abcdef", size: 123_456_789, sha1: Array(repeating: 7, count: 20))
        let token = protection.streamToken(reference)
        XCTAssertEqual(protection.streamReference(token: token), reference)
        XCTAssertFalse(token.contains(reference.id), "the stream's name is sealed")
        XCTAssertNil(try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1")).streamReference(token: token))
        // Authenticated as a stream's reference: it opens as no document, and a document's token names no stream.
        XCTAssertNil(token.withCString { protection.opened(token: UnsafeRawBufferPointer(start: $0, count: strlen($0))) })
        XCTAssertNil(protection.streamReference(token: protection.seal(Array("0123 5 AAAA".utf8), context: "document")))

        // Shown to a reader: where the document is, never the token.
        let sealedData = JSONObject([("extension", .array([.object(JSONObject([("url", .string(IdentifierProtection.encryptedValueURL)),
                                                                                  ("valueString", .string(token))]))]))])
        let stored = JSONObject([("resourceType", .string("Binary")), ("id", .string("b1")), ("contentType", .string("application/pdf")),
                                 ("_data", .object(sealedData))])
        let shown = protection.reveal(stored, shown: true)
        let text = String(decoding: JSONWriter.bytes(.object(shown)), as: UTF8.self)
        XCTAssertFalse(text.contains(token))
        XCTAssertEqual(shown["_data"]?["extension"]?[0]?["url"]?.stringValue, ResourceValidator.storedDocumentURL)
        XCTAssertEqual(shown["_data"]?["extension"]?[0]?["valueAttachment"]?["size"], .number("123456789"))
        // What writes the resource again keeps the token.
        XCTAssertEqual(protection.reveal(stored), stored)
        XCTAssertEqual(protection.streamReference(in: stored), reference)
    }
}
