import Access
import FHIRModel
import NIOCore
import Store

extension FHIRService {
    /// A Binary read in its own type (R4 http.html#binary; IHE MHD ITI-68): the same decision and
    /// audit as a read, answered with the document itself when it holds one.
    public func readBinary(_ id: String, version: String? = nil) async throws -> BinaryRead {
        let record = if let version { try await checkedVRead("Binary", id, version: version) } else { try await checkedRead("Binary", id) }
        if let content = record.content, let document = presenter.document(content) {
            return .document(version: record.version, contentType: document.contentType, bytes: document.bytes)
        }
        if let stream = try await documentStream(record) {
            let contentType = IdentifierProtection.parse(record.content, revealing: nil)?["contentType"]?.stringValue
            return .stream(version: record.version, contentType: contentType ?? "application/octet-stream", stream)
        }
        return .resource(presented(record))
    }

    public enum BinaryRead: Sendable {
        case document(version: Int, contentType: String, bytes: ByteBuffer)
        /// A document kept as a stream (ADR 029), sent as the client takes it.
        case stream(version: Int, contentType: String, DocumentStreamRead)
        /// A Binary without a document: read as a resource.
        case resource(InteractionResult)
    }
}
