import Access
import FHIRModel
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import Platform

/// When a Binary sent in its own type is kept as a stream (ADR 029): past `streamFrom` bytes;
/// and the most it may hold (R4 `Attachment.size` is an unsignedInt).
struct DocumentLimits: Sendable {
    var streamFrom = 4 * 1024 * 1024
    var maximum = Int(Int32.max)
}

/// Binaries in their own content type (R4 http.html#binary; ADR 026): written from the document
/// itself, whole or streamed (ADR 029), and read back as it.
extension FHIRRoutes {
    /// A Binary read (or one version of it) in its own type: its document, whole or streamed (ADR 026, 029).
    func rawBinary(_ id: String, version: String?, base: String) async throws -> Response {
        switch try await service.readBinary(id, version: version) {
        case .document(let version, let contentType, let bytes):
            // Whatever a facility stored (HTML, SVG) is shown sandboxed: no script of it
            // runs in the platform's origin.
            return Response(status: .ok, headers: [.contentType: contentType, .eTag: ETag.make(version),
                                                   .contentSecurityPolicy: Self.documentPolicy],
                            body: .init(byteBuffer: bytes))
        case .stream(let version, let contentType, let stream):
            return Response(status: .ok, headers: [.contentType: contentType, .eTag: ETag.make(version),
                                                   .contentSecurityPolicy: Self.documentPolicy],
                            body: ResponseBody(contentLength: stream.reference.size) { writer in
                                try await stream.send { try await writer.write($0) }
                                try await writer.finish(nil)
                            })
        case .resource(let result):
            return FHIRResponse.resource(result, base: base)
        }
    }

    /// A read of a Binary whose Accept names no FHIR format and `_format` none either: the client
    /// wants the document's own bytes (http://hl7.org/fhir/R4/binary.html#rest). `*/*` alone still
    /// gets the FHIR resource.
    static func wantsRawBinary(_ request: Request) -> Bool {
        guard request.method == .get, request.uri.queryParameters["_format"] == nil,
              let accept = request.headers[.accept], !accept.isEmpty, accept.trimmingCharacters(in: .whitespaces) != "*/*" else { return false }
        let parts = request.uri.path.split(separator: "/")
        // `Binary/{id}`, or one version of it: `Binary/{id}/_history/{version}`.
        let binary = parts.count >= 2 && parts[parts.count - 2] == "Binary"
            || parts.count >= 4 && parts[parts.count - 4] == "Binary" && parts[parts.count - 2] == "_history"
        guard binary else { return false }
        let lowered = accept.lowercased()
        return !lowered.contains("fhir") && !lowered.contains("json")
    }

    /// A create or update (`write`) of the resource the request sends: FHIR JSON, or a Binary's
    /// document itself, kept as a stream when it passes the threshold (ADR 029).
    func written(_ request: Request, id: String?, _ write: (FHIRService, JSON) async throws -> InteractionResult) async throws -> InteractionResult {
        switch try await nativeBinary(request, id: id) {
        case nil: return try await write(writing(request), try await readResource(request))
        case .inline(let binary)?: return try await write(writing(request), binary)
        case .streamed(let binary, let pending)?:
            return try await service.writeStreamed(pending) { try await write(writing(request), binary) }
        }
    }

    enum NativeBinary {
        /// The document in `data`.
        case inline(JSON)
        /// The document received as a stream, which the write names (`StreamedDocument`).
        case streamed(JSON, StreamedDocument.Pending)
    }

    /// A Binary written in its own content type (http://hl7.org/fhir/R4/http.html#binary): POST to
    /// `Binary` or PUT to `Binary/{id}` with the document itself as the body. The server makes the
    /// Binary: `contentType` from the header, `securityContext` from `X-Security-Context`, `data`
    /// the body's bytes. Nil for a FHIR body (JSON), which is read as any resource is.
    func nativeBinary(_ request: Request, id: String?) async throws -> NativeBinary? {
        guard Self.isNativeBinaryWrite(request), let contentType = request.headers[.contentType] else { return nil }
        let media = Self.mediaType(contentType)
        // What a browser sends to another site without asking first: refused, as for every write.
        if ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"].contains(media) {
            throw FHIRError(.unsupportedFormat, code: "not-supported",
                            "A Binary is not taken as \(media) (a browser sends that to any site); send it as a FHIR Binary (application/fhir+json) or in another content type")
        }
        // The body is kept as the document's bytes: a coded one (gzip) would be kept, and later
        // served, as its coding under the document's type (RFC 9110 §8.4: 415 for a coding not taken).
        if let coding = request.headers[.contentEncoding], !coding.split(separator: ",").allSatisfy({
            $0.trimmingCharacters(in: .whitespaces).lowercased() == "identity" }) {
            throw FHIRError(.unsupportedFormat, code: "not-supported",
                            "A document is taken as its own bytes, not in Content-Encoding '\(coding)'; send it without a content coding")
        }
        let declared = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
        var binary = JSONObject()
        binary["resourceType"] = .string("Binary")
        if let id { binary["id"] = .string(id) }
        binary["contentType"] = .string(declared)
        if let context = request.headers[Self.securityContextHeader] {
            let parts = context.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, FHIRSchema.r4.isResourceType(String(parts[0])), FHIRPrimitive.isValidID(String(parts[1])) else {
                throw FHIRError(.invalid, code: "value", "X-Security-Context must be a reference such as Patient/123 (got '\(context)')",
                                at: "Binary.securityContext")
            }
            binary["securityContext"] = .object(JSONObject([("reference", .string("\(parts[0])/\(parts[1])"))]))
        }
        // Up to the threshold the document is taken whole, as `data`; past it (or past the body
        // limit, when that is lower), it is streamed.
        let streamFrom = min(documents.streamFrom, maxBodyBytes)
        var chunks = request.body.makeAsyncIterator()
        var bytes = ByteBuffer()
        while let chunk = try await chunks.next() {
            var chunk = chunk
            bytes.writeBuffer(&chunk)
            if bytes.readableBytes > streamFrom {
                // What would refuse the write refuses it before any of the document is kept.
                try await service.checkStreamedWrite(id: id, ifMatch: try ifMatch(request), conditional: request.headers[.ifNoneExist] != nil)
                let declared = request.headers[.contentLength].flatMap { Int($0) }
                let pending = try await service.receiveDocument(prefix: bytes, rest: &chunks, limit: documents.maximum, declared: declared)
                return .streamed(.object(binary), pending)
            }
        }
        binary["data"] = .string(bytes.withUnsafeReadableBytes { Base64.encode($0) })
        return .inline(.object(binary))
    }

    static let securityContextHeader = HTTPField.Name("X-Security-Context")!

    /// A stored document is shown sandboxed: no script of it runs in the platform's origin.
    static let documentPolicy = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"

    /// POST `Binary` or PUT `Binary/{id}` with a body that is not FHIR: neither JSON nor FHIR's XML.
    static func isNativeBinaryWrite(_ request: Request) -> Bool {
        let parts = request.uri.path.split(separator: "/")
        let binary = switch request.method {
        case .post: parts.last == "Binary"
        case .put: parts.count >= 2 && parts[parts.count - 2] == "Binary"
        default: false
        }
        guard binary, let contentType = request.headers[.contentType] else { return false }
        let media = mediaType(contentType)
        return !media.isEmpty && !media.contains("json") && !["application/fhir+xml", "application/xml+fhir"].contains(media)
    }
}
