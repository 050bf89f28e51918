import FHIRModel
import HTTPTypes
import Hummingbird
import Platform
import Store

/// Builds HTTP responses for FHIR content: content type, versioning headers, OperationOutcomes.
enum FHIRResponse {
    static let contentType = "application/fhir+json; charset=utf-8"

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
