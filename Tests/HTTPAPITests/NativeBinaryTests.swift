@testable import Access
import FHIRModel
import Foundation
import NIOCore
@testable import Platform
import XCTest

/// A Binary read in its own content type (ADR 026): the stored JSON is scanned, not parsed; a
/// clear document is decoded straight into the buffer sent, a sealed one (ADR 027) opened from its
/// token; a stored form the scan does not take is parsed whole; and whoever reads the Binary —
/// another facility with the masked view too — gets the exact bytes.
final class NativeBinaryTests: XCTestCase {
    let document = (0..<1_000_001).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    func binary(data: String? = nil) -> JSONObject {
        JSONObject([("resourceType", .string("Binary")), ("id", .string("b1")),
                    ("meta", .object(JSONObject([("versionId", .string("3")), ("source", .string("urn:huitong:facility:org-a"))]))),
                    ("contentType", .string("application/dicom")), ("data", .string(data ?? Base64.encode(document)))])
    }

    /// Stored bytes as the store hands them out: in a buffer whose reader index is not 0.
    func stored(_ object: JSONObject) -> ByteBuffer {
        var buffer = ByteBuffer(bytes: [UInt8](repeating: 0x20, count: 7))
        buffer.moveReaderIndex(forwardBy: 7)
        buffer.writeBytes(JSONWriter.bytes(.object(object)))
        return buffer
    }

    func presenter(_ protection: IdentifierProtection?, facility: String = "org-b") -> IdentifierPresenter {
        IdentifierPresenter(protection: protection, principal: Principal(kind: .client, subject: "c", role: .facilitySystem, facility: facility,
                                                                         scopes: SMARTScope.parseList("system/*.cruds")))
    }

    func test_aClearDocumentIsDecodedFromTheStoredForm() throws {
        let found = try XCTUnwrap(presenter(nil).document(stored(binary())))
        XCTAssertEqual(found.contentType, "application/dicom")
        XCTAssertEqual(Array(found.bytes.readableBytesView), document)
        // Stored data that is not base64 is not sent as if it were.
        XCTAssertNil(presenter(nil).document(stored(binary(data: "QUJD*"))))
        // A Binary without data has no document (it is read as a resource).
        var empty = binary()
        empty["data"] = nil
        XCTAssertNil(presenter(nil).document(stored(empty)))
    }

    func test_aSealedDocumentIsOpenedForWhoeverReadsIt() throws {
        let protection = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
        let sealed = stored(protection.protect(binary(), type: "Binary").stored)
        XCTAssertFalse(String(buffer: sealed).contains(Base64.encode(Array(document.prefix(300)))), "sealed at rest")
        for facility in ["org-a", "org-b"] {  // the writer (clear view) and another facility (masked view)
            let found = try XCTUnwrap(presenter(protection, facility: facility).document(sealed))
            XCTAssertEqual(found.contentType, "application/dicom")
            XCTAssertEqual(Array(found.bytes.readableBytesView), document, facility)
        }
        // Another keyring opens nothing: no document rather than wrong bytes.
        let other = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
        XCTAssertNil(presenter(other).document(sealed))
    }

    /// A sealed Binary read as FHIR JSON: the opened document spliced into the stored bytes gives
    /// exactly what the generic reveal writes; a Binary with another sealed value (an identifier in
    /// its security context) or a document sealed as its text takes the generic path, masked where
    /// the caller may not see identifiers.
    func test_aSealedBinaryReadAsJSONIsTheResourceAsSent() throws {
        let protection = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
        let sent = binary()
        let sealed = stored(protection.protect(sent, type: "Binary").stored)
        for facility in ["org-a", "org-b"] {
            let shown = try XCTUnwrap(presenter(protection, facility: facility).content(sealed, type: "Binary"))
            XCTAssertEqual(Array(shown.readableBytesView), JSONWriter.bytes(.object(sent)), facility)
        }
        XCTAssertNotNil(IdentifierPresenter.openedBinary(sealed, protection), "the splice, not the generic path")
        // Another sealed value beside the document: the generic path, which masks it for another facility.
        var withID = sent
        withID["securityContext"] = .object(JSONObject([("identifier", .object(JSONObject([
            ("system", .string(IdentifierProtection.residentIDSystem)), ("value", .string("110101199003071234"))])))]))
        let both = stored(protection.protect(withID, type: "Binary").stored)
        XCTAssertNil(IdentifierPresenter.openedBinary(both, protection))
        let mine = try XCTUnwrap(presenter(protection, facility: "org-a").content(both, type: "Binary"))
        XCTAssertEqual(Array(mine.readableBytesView), JSONWriter.bytes(.object(withID)))
        let theirs = String(buffer: try XCTUnwrap(presenter(protection, facility: "org-b").content(both, type: "Binary")))
        XCTAssertFalse(theirs.contains("110101199003071234"))
        XCTAssertTrue(theirs.contains(Base64.encode(document)), "the document itself is opened for them too")
        // A document sealed as its text (line breaks): the generic path, exactly as sent.
        let folded = binary(data: Data(document.prefix(1000)).base64EncodedString(options: .lineLength64Characters))
        let sealedFolded = stored(protection.protect(folded, type: "Binary").stored)
        XCTAssertNil(IdentifierPresenter.openedBinary(sealedFolded, protection))
        let shownFolded = try XCTUnwrap(presenter(protection, facility: "org-a").content(sealedFolded, type: "Binary"))
        XCTAssertEqual(Array(shownFolded.readableBytesView), JSONWriter.bytes(.object(folded)))
    }

    func test_aStoredFormWithAnEscapeIsParsedWhole() throws {
        let small: [UInt8] = [0xFF, 0xFF, 0xFF, 0x3C, 0x61, 0x2F, 0x3E]  // base64 "////PGEvPg=="
        // `\/` is a legal JSON spelling of `/`: the scan leaves it to the parser, which decodes it.
        let text = String(buffer: stored(binary(data: Base64.encode(small)))).replacingOccurrences(of: "/", with: "\\/")
        let found = try XCTUnwrap(presenter(nil).document(ByteBuffer(string: text)))
        XCTAssertEqual(Array(found.bytes.readableBytesView), small)
        XCTAssertEqual(found.contentType, "application/dicom")
        // A content type with an escape (`charset="UTF-8"`) is sent unescaped.
        var quoted = binary()
        quoted["contentType"] = .string(#"text/xml; charset="UTF-8""#)
        let xml = try XCTUnwrap(presenter(nil).document(stored(quoted)))
        XCTAssertEqual(xml.contentType, #"text/xml; charset="UTF-8""#)
        XCTAssertEqual(Array(xml.bytes.readableBytesView), document)
    }
}
