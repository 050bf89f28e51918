import FHIRModel
import Foundation
import Hummingbird
import NIOCore
import Platform
import XCTest

@testable import HTTPAPI

/// A Binary read in its own content type is decoded from the stored JSON straight into the buffer
/// sent (issue 29); a stored form the scan cannot take still answers, parsed whole.
final class NativeBinaryTests: XCTestCase {
    /// Collects what a response body writes, piece by piece.
    final class Collector: ResponseBodyWriter, @unchecked Sendable {
        var pieces: [ByteBuffer] = []
        var finished = false
        func write(_ buffer: ByteBuffer) async throws { pieces.append(buffer) }
        func finish(_ trailingHeaders: HTTPFields?) async throws { finished = true }
    }

    func stored(_ document: [UInt8], data: String? = nil) -> ByteBuffer {
        let json = JSON.object(JSONObject([("resourceType", .string("Binary")), ("id", .string("b1")),
                                           ("meta", .object(JSONObject([("versionId", .string("3"))]))),
                                           ("contentType", .string("application/dicom")),
                                           ("data", .string(data ?? Base64.encode(document)))]))
        var buffer = ByteBuffer(bytes: [UInt8](repeating: 0x20, count: 7))  // a reader index that is not 0
        buffer.moveReaderIndex(forwardBy: 7)
        buffer.writeBytes(JSONWriter.bytes(json))
        return buffer
    }

    func test_aLargeBinaryIsDecodedFromTheStoredForm() async throws {
        let document = (0..<1_000_001).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let response = try XCTUnwrap(FHIRResponse.directBinary(stored(document), headers: [.eTag: "W/\"3\""]))
        XCTAssertEqual(response.headers[.contentType], "application/dicom")
        XCTAssertEqual(response.headers[.eTag], "W/\"3\"")
        XCTAssertEqual(response.body.contentLength, document.count)
        let collector = Collector()
        try await response.body.write(collector)
        XCTAssertEqual(collector.pieces.flatMap { Array($0.readableBytesView) }, document)
        // Stored data that is not base64 is not sent as if it were.
        XCTAssertNil(FHIRResponse.directBinary(stored([], data: "QUJD*"), headers: [:]))
    }

    func test_aStoredFormWithAnEscapeIsParsedWhole() async throws {
        let document: [UInt8] = [0xFF, 0xFF, 0xFF, 0x3C, 0x61, 0x2F, 0x3E]  // base64 "////PGEvPg=="
        // `\/` is a legal JSON spelling of `/`: the scan leaves it to the parser, which decodes it.
        var text = String(buffer: stored(document))
        text = text.replacingOccurrences(of: Base64.encode(document), with: Base64.encode(document).replacingOccurrences(of: "/", with: "\\/"))
        XCTAssertTrue(text.contains("\\/"))
        let content = ByteBuffer(string: text)
        XCTAssertNil(FHIRResponse.directBinary(content, headers: [:]))
        let collector = Collector()
        let response = try XCTUnwrap(FHIRResponse.rawBinary(InteractionResult(.ok, version: 3, content: content)))
        try await response.body.write(collector)
        XCTAssertEqual(collector.pieces.flatMap { Array($0.readableBytesView) }, document)
        XCTAssertEqual(response.headers[.eTag], "W/\"3\"")
    }
}
