import FHIRModel
import HTTPTypes
import Hummingbird
import Platform
import Store

/// Builds HTTP responses for FHIR content: content type, versioning headers, OperationOutcomes.
enum FHIRResponse {
    static let contentType = "application/fhir+json; charset=utf-8"

    /// A Binary's bytes with its own content type (nil: not a Binary with data).
    static func rawBinary(_ r: InteractionResult) -> Response? {
        guard let content = r.content else { return nil }
        var headers: HTTPFields = [:]
        if let version = r.version { headers[.eTag] = ETag.make(version) }
        if let direct = directBinary(content, headers: headers) { return direct }
        // A stored form the scan does not take (an escaped string): parsed whole.
        guard case .object(let o)? = try? JSONParser.parse(content.readableBytesView),
              o["resourceType"]?.stringValue == "Binary", let data = o["data"]?.stringValue, let bytes = Base64.decode(data) else { return nil }
        headers[.contentType] = o["contentType"]?.stringValue ?? "application/octet-stream"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The document decoded from the stored JSON straight into the buffer that is sent: no parsed
    /// string of its base64 text, no intermediate copy; the stored form is let go before sending.
    /// (A 10 MB document read by 8 clients at once: 44 reads/s against 38/s parsed, and a lower
    /// peak memory than either the parsed form or decoding piece by piece as the client takes it,
    /// which holds the stored form for as long as the client reads; docs/performance.md.)
    static func directBinary(_ content: ByteBuffer, headers: HTTPFields) -> Response? {
        let decoded = content.withUnsafeReadableBytes { bytes -> (contentType: String?, document: ByteBuffer)? in
            guard let members = JSONMembers.strings(in: bytes, named: ["resourceType", "contentType", "data"]),
                  let type = members["resourceType"], String(decoding: UnsafeRawBufferPointer(rebasing: bytes[type]), as: UTF8.self) == "Binary",
                  let range = members["data"] else { return nil }
            let data = UnsafeRawBufferPointer(rebasing: bytes[range])
            var document = ByteBufferAllocator().buffer(capacity: Base64.maxDecodedCount(data.count))
            var valid = true
            document.writeWithUnsafeMutableBytes(minimumWritableBytes: Base64.maxDecodedCount(data.count)) { out in
                guard let written = Base64.decode(data, into: out) else { valid = false; return 0 }
                return written
            }
            guard valid else { return nil }
            let contentType = members["contentType"].map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self) }
            return (contentType, document)
        }
        guard let decoded else { return nil }
        var headers = headers
        headers[.contentType] = decoded.contentType ?? "application/octet-stream"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: decoded.document))
    }

    static func json(_ value: JSON, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = contentType
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value))))
    }

    static func error(_ error: FHIRError) -> Response {
        json(OperationOutcome.make(error.issues), status: HTTPResponse.Status(code: error.category.restStatus))
    }

    /// The response for a read or write: ETag, Last-Modified, Location, and the body as `Prefer` asks.
    static func resource(_ r: InteractionResult, base: String, prefer: Prefer = .representation, location: Bool = false) -> Response {
        var headers: HTTPFields = [:]
        if let v = r.version { headers[.eTag] = ETag.make(v) }
        if let t = r.lastUpdated { headers[.lastModified] = httpDate(micros: t) }
        if location, let k = r.key, let v = r.version { headers[.location] = "\(base)/\(k)/_history/\(v)" }
        let status = HTTPResponse.Status(code: r.disposition.restStatus)
        if let outcome = r.outcome { return json(outcome, status: status, headers: headers) }
        guard let content = r.content, r.disposition != .deleted else { return Response(status: status, headers: headers) }
        switch prefer {
        case .minimal:
            return Response(status: status, headers: headers)
        case .operationOutcome:
            let stored = "\(r.key.map(\.description) ?? "") version \(r.version ?? 0) stored"
            if !r.warnings.isEmpty { return json(OperationOutcome.make(r.warnings + [Issue(.information, code: "informational", stored)]), status: status, headers: headers) }
            return json(OperationOutcome.information(stored), status: status, headers: headers)
        case .representation:
            headers[.contentType] = contentType
            return Response(status: status, headers: headers, body: .init(byteBuffer: content))
        }
    }

    enum Prefer { case minimal, representation, operationOutcome }

    static func prefer(_ request: Request) -> Prefer {
        guard let p = request.headers[.prefer] else { return .representation }
        if p.contains("return=minimal") { return .minimal }
        if p.contains("return=OperationOutcome") { return .operationOutcome }
        return .representation
    }

    static func httpDate(micros: Int64) -> String {
        FHIRDateTime.formatHTTPDate(micros: micros)
    }
}

extension FHIRResponse {
    /// A Bundle the core wrote, as a 200 response.
    static func bundle(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
