import Access
import FHIRModel
import Foundation
import HTTPTypes
import HummingbirdCore
import NIOHTTP1
import Hummingbird
import Logging
import Platform
import Store

/// The FHIR REST API under `/fhir`: maps HTTP requests onto `FHIRService` and
/// `BundleProcessor`, and renders results and errors as FHIR JSON.
struct FHIRRoutes: Sendable {
    let service: FHIRService
    let searches: SearchService
    let bundles: BundleProcessor
    let maxBodyBytes: Int
    let authenticator: Authenticator
    /// `--dev`: said in the CapabilityStatement.
    let development: Bool
    /// `https` with TLS on, for the URLs in responses.
    let scheme: String
    /// Requests per authenticated client or user (nil: unlimited).
    let clientLimiter: RateLimiter?
    /// The externally visible base URL (`--public-url`); nil (only with `--dev`): from the Host header.
    var publicURL: String? = nil
    /// Where failed authentication is audited (nil: not at all, for tests of routing alone).
    var failures: AuthenticationFailureAudit? = nil
    /// The operations offered (the platform's and the domain modules'), dispatched by name (ADR 019).
    var operations: OperationRegistry = .platform
    /// When a Binary sent in its own type is streamed, and how large it may be (ADR 029).
    var documents = DocumentLimits()

    /// The routes on behalf of `principal`: every service call below asks the access decision for it.
    func acting(as principal: Principal, from origin: RequestOrigin) -> FHIRRoutes {
        let acting = service.acting(as: principal, from: origin)
        return FHIRRoutes(service: acting, searches: searches.acting(as: principal, from: origin), bundles: BundleProcessor(service: acting),
                          maxBodyBytes: maxBodyBytes, authenticator: authenticator, development: development, scheme: scheme,
                          clientLimiter: clientLimiter, publicURL: publicURL, failures: failures, operations: operations,
                          documents: documents)
    }

    func register(on router: Router<HuitongRequestContext>) {
        let fhir = router.group("fhir")
        fhir.get("metadata") { request, _ in
            handle(request) { base in FHIRResponse.json(CapabilityStatementBuilder.build(baseURL: base, development: development, operations: operations)) }
        }
        fhir.post("") { request, context in
            try await handle(request, context) { r, base in try await r.transaction(request, base: base) }
        }
        fhir.get("_history") { request, context in
            try await handle(request, context) { r, base in try await r.history(request, base: base, type: nil, id: nil) }
        }
        fhir.get("{type}") { request, context in
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type")
                // A system-level operation asked with GET (`/fhir/$recognition-statistics`).
                if type.hasPrefix("$") { return try await r.operation(request, base: base, level: .system, name: type, type: nil, id: nil) }
                return try await r.search(request, base: base, type: type, query: request.uri.query ?? "")
            }
        }
        fhir.post("{type}/_search") { request, context in
            try await handle(request, context) { r, base in
                let contentType = request.headers[.contentType] ?? ""
                guard contentType.hasPrefix("application/x-www-form-urlencoded") else {
                    throw FHIRError(.unsupportedFormat, code: "not-supported", "POST _search takes application/x-www-form-urlencoded")
                }
                let form = String(buffer: try await r.body(request))
                let query = [request.uri.query, form].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "&")
                return try await r.search(request, base: base, type: try context.parameters.require("type"), query: query)
            }
        }
        fhir.post("{type}") { request, context in
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type")
                if type == "_search" { throw FHIRError(.notFound, code: "not-supported", "System-level search is not supported") }
                if type.hasPrefix("$") { return try await r.operation(request, base: base, level: .system, name: type, type: nil, id: nil) }
                let result = try await r.written(request, id: nil) { service, body in
                    try await service.create(type, body: body, ifNoneExist: request.headers[.ifNoneExist])
                }
                return FHIRResponse.resource(result, base: base, prefer: FHIRResponse.prefer(request), location: result.disposition == .created)
            }
        }
        fhir.post("{type}/{id}") { request, context in
            // Type-level operations (`Patient/$match`); the path shape is that of an instance.
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type"), operation = try context.parameters.require("id")
                guard operation.hasPrefix("$") else {
                    throw FHIRError(.notAllowed, code: "not-supported", "POST to \(type)/\(operation): create with POST \(type), update with PUT")
                }
                return try await r.operation(request, base: base, level: .type, name: operation, type: type, id: nil)
            }
        }
        fhir.post("{type}/{id}/{operationOrCompartment}") { request, context in
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type"), id = try context.parameters.require("id")
                let operation = try context.parameters.require("operationOrCompartment")
                guard operation.hasPrefix("$") else {
                    throw FHIRError(.notFound, code: "not-supported", "Unknown operation '\(type)/\(id)/\(operation)'")
                }
                return try await r.operation(request, base: base, level: .instance, name: operation, type: type, id: id)
            }
        }
        fhir.put("{type}") { request, context in
            try await handle(request, context) { r, base in
                guard let query = request.uri.query, !query.isEmpty else {
                    throw FHIRError(.invalid, code: "invalid", "PUT to a type needs search parameters (conditional update) or an id in the URL")
                }
                let body = try await r.readResource(request)
                let result = try await r.writing(request).conditionalUpdate(try context.parameters.require("type"), query: query, body: body,
                                                            ifMatch: try r.ifMatch(request))
                return FHIRResponse.resource(result, base: base, prefer: FHIRResponse.prefer(request), location: true)
            }
        }
        fhir.delete("{type}") { request, context in
            try await handle(request, context) { r, base in
                guard let query = request.uri.query, !query.isEmpty else {
                    throw FHIRError(.invalid, code: "invalid", "DELETE on a type needs search parameters (conditional delete)")
                }
                let result = try await r.service.conditionalDelete(try context.parameters.require("type"), query: query)
                return FHIRResponse.resource(result, base: base)
            }
        }
        fhir.get("{type}/_history") { request, context in
            try await handle(request, context) { r, base in try await r.history(request, base: base, type: try context.parameters.require("type"), id: nil) }
        }
        fhir.get("{type}/{id}") { request, context in
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type"), id = try context.parameters.require("id")
                if id.hasPrefix("$") { return try await r.operation(request, base: base, level: .type, name: id, type: type, id: nil) }
                // The generated definitions of the operations offered (ADR 019); others are stored ones.
                if type == "OperationDefinition", let definition = r.operations.definition(id: id) {
                    // The same decision as a read of a stored one (shared conformance content).
                    try await r.service.authorize(.read, type)
                    return FHIRResponse.json(definition)
                }
                if try context.parameters.require("type") == "AuditEvent" {
                    let event = try await AuditLog(service: r.service).read(try context.parameters.require("id"))
                    return Response(status: .ok, headers: [.contentType: FHIRResponse.contentType], body: .init(byteBuffer: event))
                }
                // A Binary asked for in its own type (IHE MHD ITI-68: the document itself): its bytes.
                if type == "Binary", Self.wantsRawBinary(request) { return try await r.rawBinary(id, version: nil, base: base) }
                let (mode, elements) = try SearchQueryParser().parseSubsetting(query: request.uri.query ?? "")
                // A streamed document is opened for the response only when the subset keeps `data`.
                let keepsData = (mode == .full || mode == .data) && (elements.map { $0.contains("data") } ?? true)
                var result = try await r.service.read(try context.parameters.require("type"), try context.parameters.require("id"),
                                                      inlining: keepsData)
                result.content = ResourceSubset.content(result.content, mode, elements)
                return FHIRResponse.resource(result, base: base)
            }
        }
        fhir.put("{type}/{id}") { request, context in
            try await handle(request, context) { r, base in
                let (type, id) = (try context.parameters.require("type"), try context.parameters.require("id"))
                let ifMatch = try r.ifMatch(request)
                let result = try await r.written(request, id: id) { service, body in
                    try await service.update(type, id, body: body, ifMatch: ifMatch)
                }
                return FHIRResponse.resource(result, base: base, prefer: FHIRResponse.prefer(request), location: true)
            }
        }
        fhir.patch("{type}/{id}") { request, context in
            try await handle(request, context) { r, base in
                let patch = try await r.jsonPatch(request)
                let result = try await r.writing(request).patch(try context.parameters.require("type"), try context.parameters.require("id"),
                                                patch: patch, ifMatch: try r.ifMatch(request))
                return FHIRResponse.resource(result, base: base, prefer: FHIRResponse.prefer(request))
            }
        }
        fhir.patch("{type}") { request, context in
            try await handle(request, context) { r, base in
                guard let query = request.uri.query, !query.isEmpty else {
                    throw FHIRError(.invalid, code: "invalid", "PATCH on a type needs search parameters (conditional patch) or an id in the URL")
                }
                let patch = try await r.jsonPatch(request)
                let result = try await r.writing(request).conditionalPatch(try context.parameters.require("type"), query: query, patch: patch)
                return FHIRResponse.resource(result, base: base, prefer: FHIRResponse.prefer(request))
            }
        }
        fhir.delete("{type}/{id}") { request, context in
            try await handle(request, context) { r, base in
                let result = try await r.service.delete(try context.parameters.require("type"), try context.parameters.require("id"),
                                                 ifMatch: try r.ifMatch(request))
                return FHIRResponse.resource(result, base: base)
            }
        }
        fhir.get("{type}/{id}/_history") { request, context in
            try await handle(request, context) { r, base in
                try await r.history(request, base: base, type: try context.parameters.require("type"), id: try context.parameters.require("id"))
            }
        }
        fhir.get("{type}/{id}/{operationOrCompartment}") { request, context in
            try await handle(request, context) { r, base in
                let type = try context.parameters.require("type"), id = try context.parameters.require("id")
                let third = try context.parameters.require("operationOrCompartment")
                if third.hasPrefix("$") { return try await r.operation(request, base: base, level: .instance, name: third, type: type, id: id) }
                guard type == "Patient", FHIRSchema.r4.isResourceType(third) else {
                    throw FHIRError(.notFound, code: "not-supported", "Unknown operation or compartment '\(type)/\(id)/\(third)'")
                }
                // Compartment search: GET /Patient/{id}/Observation?code=...
                let query = (request.uri.query.map { $0 + "&" } ?? "") + "_compartment=Patient/" + id
                return try await r.search(request, base: base, type: third, query: query, selfPath: "Patient/\(id)/\(third)")
            }
        }
        fhir.get("{type}/{id}/_history/{version}") { request, context in
            try await handle(request, context) { r, base in
                if try context.parameters.require("type") == "Binary", Self.wantsRawBinary(request) {
                    return try await r.rawBinary(try context.parameters.require("id"), version: try context.parameters.require("version"), base: base)
                }
                let result = try await r.service.vread(try context.parameters.require("type"), try context.parameters.require("id"),
                                                version: try context.parameters.require("version"))
                return FHIRResponse.resource(result, base: base)
            }
        }
    }

    // MARK: request plumbing

    /// Authenticates the request, then runs a handler with the routes acting for its principal,
    /// rendering any error as an OperationOutcome (401 with `WWW-Authenticate` without a valid
    /// token). Also enforces JSON-only formats.
    func handle(_ request: Request, _ context: HuitongRequestContext,
                _ body: (FHIRRoutes, String) async throws -> Response) async throws -> Response {
        let principal: Principal
        do {
            principal = try await authenticator.principal(request)
        } catch {
            // A credential that does not hold (forged, expired, malformed) is an attempt: audited.
            if request.headers[.authorization] != nil {
                await failures?.record("authenticate", subject: "unknown", kind: .anonymous, address: context.remoteAddress?.ipAddress,
                                       reason: "\(request.method) \(request.uri.path): \(error.reason)")
            }
            return Authenticator.refusal(error)
        }
        if let clientLimiter, principal.kind != .development, let wait = clientLimiter.take(principal.kind.rawValue + ":" + principal.subject) {
            return RateLimiter.refusal(retryAfter: wait, what: "from \(principal.subject)")
        }
        do {
            try checkFormat(request)
            let origin = RequestOrigin(address: context.remoteAddress?.ipAddress,
                                       breakGlassReason: request.headers[.breakGlassReason].flatMap { $0.isEmpty ? nil : $0 })
            let routes = acting(as: principal, from: origin)
            try await routes.service.checkBreakGlass()
            return try await body(routes, baseURL(request))
        } catch let error as FHIRError {
            return FHIRResponse.error(error)
        } catch is HTTPParserError {
            // A body that breaks HTTP/1.1 framing (a bad chunk size): the connection cannot be
            // trusted to carry another request.
            var response = FHIRResponse.error(FHIRError(.invalid, code: "structure", "The request body is not valid HTTP/1.1 (chunked encoding or framing)"))
            response.headers[.connection] = "close"
            return response
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            return FHIRResponse.error(FHIRError(.tooCostly, code: "too-costly", "Request body exceeds the limit of \(maxBodyBytes) bytes"))
        } catch let error as HTTPError {
            return FHIRResponse.error(FHIRError(.init(restStatus: Int(error.status.code)), code: "processing", error.body ?? "\(error.status)"))
        } catch let error as any HTTPResponseError {
            return FHIRResponse.error(FHIRError(.init(restStatus: Int(error.status.code)), code: "processing", "\(error)"))
        } catch {
            // Anything else is ours, not the client's: say so in an OperationOutcome, never as a bare 500.
            return FHIRResponse.error(FHIRError.internalError("\(request.method) \(request.uri.path): \(error)", logger: context.logger))
        }
    }

    func handle(_ request: Request, _ body: (String) throws -> Response) -> Response {
        do {
            try checkFormat(request)
            return try body(baseURL(request))
        } catch let error as FHIRError {
            return FHIRResponse.error(error)
        } catch {
            return FHIRResponse.error(FHIRError.internalError(error))
        }
    }

    func baseURL(_ request: Request) -> String {
        if let publicURL { return publicURL.trimmingTrailingSlashes() + "/fhir" }
        let host = request.head.authority ?? "localhost"
        return "\(scheme)://\(host)/fhir"
    }

    func checkFormat(_ request: Request) throws(FHIRError) {
        if let format = request.uri.queryParameters["_format"].map(String.init) {
            let accepted = ["json", "application/json", "application/fhir+json"]
            // An operation may answer in CSV (`$recognition-statistics`); it says so, or answers JSON.
            let csv = ["csv", "text/csv"].contains(where: { format.hasPrefix($0) }) && request.uri.path.contains("/$")
            if !accepted.contains(where: { format.hasPrefix($0) }) && !csv {
                throw FHIRError(.notAcceptable, code: "not-supported", "Only JSON is supported (_format=\(format))")
            }
        }
        if let contentType = request.headers[.contentType], contentType.contains("xml"), !Self.isNativeBinaryWrite(request) {
            throw FHIRError(.unsupportedFormat, code: "not-supported", "Only JSON is supported (Content-Type: \(contentType)); send application/fhir+json")
        }
        if let accept = request.headers[.accept], accept.contains("xml"), !accept.contains("json"), !accept.contains("*/*"),
           !Self.wantsRawBinary(request) {
            throw FHIRError(.notAcceptable, code: "not-supported", "Only JSON is supported (Accept: \(accept))")
        }
    }

    func body(_ request: Request) async throws -> ByteBuffer {
        var r = request
        return try await r.collectBody(upTo: maxBodyBytes)
    }

    /// A PATCH's JSON Patch document (FHIRPath Patch, sent as Parameters, is not taken).
    func jsonPatch(_ request: Request) async throws -> JSON {
        let contentType = request.headers[.contentType] ?? ""
        guard contentType.hasPrefix("application/json-patch+json") else {
            throw FHIRError(.unsupportedFormat, code: "not-supported", "PATCH takes application/json-patch+json (FHIRPath Patch is not supported yet)")
        }
        return try service.pipeline.parse(try await body(request).readableBytesView)
    }

    /// A resource (or Parameters, Bundle) in the body: JSON, said so by the Content-Type when
    /// there is one. Types a browser sends cross-site without asking (`text/plain`, forms) are
    /// refused, so that no web page can write through a logged-in browser or a `--dev` server.
    /// Any registered operation (ADR 019): its parameters from the URL, its body if POSTed.
    func operation(_ request: Request, base: String, level: RegisteredOperation.Level, name: String, type: String?,
                   id: String?) async throws -> Response {
        let get = request.method == .get || request.method == .head
        var body: JSON?
        if !get {
            let parsed = try await readResource(request, emptyAs: .null)
            body = parsed == .null ? nil : parsed
        }
        // Decoded as searches are (`+` is a space, as in every form-encoded query).
        let parameters = (request.uri.query ?? "").split(separator: "&").compactMap { pair -> (String, String)? in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = kv.first, !key.isEmpty else { return nil }
            return (percentDecode(String(key)), kv.count > 1 ? percentDecode(String(kv[1])) : "")
        }
        let invocation = OperationRequest(name: String(name.dropFirst()), level: level, type: type, id: id, parameters: parameters,
                                          query: request.uri.query, body: body, baseURL: base)
        switch try await operations.invoke(invocation, get: get, service: service) {
        case .resource(let json): return FHIRResponse.json(json)
        case .bundle(let bytes):
            return Response(status: .ok, headers: [.contentType: FHIRResponse.contentType], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .text(let text, let contentType):
            return Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    func readResource(_ request: Request, emptyAs empty: JSON? = nil) async throws -> JSON {
        if let contentType = request.headers[.contentType], !contentType.lowercased().contains("json") {
            throw FHIRError(.unsupportedFormat, code: "not-supported", "A resource body must be JSON (Content-Type: \(contentType)); send application/fhir+json")
        }
        let buffer = try await body(request)
        if let empty, buffer.readableBytes == 0 { return empty }
        return try service.pipeline.parse(buffer.readableBytesView)
    }

    /// The service for a write: without presenting the written resource when the response will
    /// not carry it (`Prefer: return=minimal`).
    func writing(_ request: Request) -> FHIRService {
        FHIRResponse.prefer(request) == .minimal ? service.withoutWrittenContent() : service
    }

    /// The media type of a Content-Type, lowercased, without its parameters.
    static func mediaType(_ contentType: String) -> String {
        (contentType.split(separator: ";").first.map(String.init) ?? "").trimmingCharacters(in: .whitespaces).lowercased()
    }

    func ifMatch(_ request: Request) throws(FHIRError) -> Int? {
        guard let value = request.headers[.ifMatch] else { return nil }
        guard let v = ETag.version(value) else { throw FHIRError(.invalid, code: "value", "Invalid If-Match '\(value)'; expected W/\"<version>\"") }
        return v
    }

    // MARK: interactions with Bundle responses

    func transaction(_ request: Request, base: String) async throws -> Response {
        let bundle = try await readResource(request)
        var bundles = bundles
        bundles.baseURL = base
        let result = try await bundles.process(bundle, returnRepresentation: FHIRResponse.prefer(request) == .representation
                                               && request.headers[.prefer] != nil)
        var entries: [JSON] = []
        for e in result.entries {
            var response = JSONObject()
            response["status"] = .string(e.status)
            if let l = e.location { response["location"] = .string(l) }
            if let t = e.etag { response["etag"] = .string(t) }
            if let m = e.lastModified { response["lastModified"] = .string(FHIRDateTime.formatInstant(micros: m)) }
            if let o = e.outcome { response["outcome"] = o }
            var entry = JSONObject()
            if let r = e.resource, let parsed = try? JSONParser.parse(r.readableBytesView) {
                if let l = e.location { entry["fullUrl"] = .string(base + "/" + l.prefix { $0 != "_" }.trimmingTrailingSlash()) }
                entry["resource"] = parsed
            }
            entry["response"] = .object(response)
            entries.append(.object(entry))
        }
        let out = JSONObject([("resourceType", .string("Bundle")), ("type", .string(result.type)), ("entry", .array(entries))])
        return FHIRResponse.json(.object(out))
    }

    func history(_ request: Request, base: String, type: String?, id: String?) async throws -> Response {
        // Decoded as searches are (`+` is a space, as in every form-encoded query).
        let parameters = (request.uri.query ?? "").split(separator: "&").compactMap { pair -> (String, String)? in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = kv.first, !key.isEmpty else { return nil }
            return (percentDecode(String(key)), kv.count > 1 ? percentDecode(String(kv[1])) : "")
        }
        return FHIRResponse.json(try await service.historyBundle(type: type, id: id, parameters: parameters, baseURL: base))
    }

    /// Type-level search (`GET /Type?...`, `POST /Type/_search`) as a searchset Bundle.
    func search(_ request: Request, base: String, type: String, query: String, selfPath: String? = nil) async throws -> Response {
        if type == "AuditEvent", selfPath == nil { return FHIRResponse.bundle(try await service.auditSearchset(query: query, baseURL: base)) }
        let strict = request.headers[.prefer]?.contains("handling=strict") ?? false
        return FHIRResponse.bundle(try await searches.searchset(type: type, query: query, strict: strict, baseURL: base, selfPath: selfPath))
    }

}

extension String {
    func trimmingTrailingSlashes() -> String { Substring(self).trimmingTrailingSlash() }
}

extension Substring {
    func trimmingTrailingSlash() -> String {
        var s = self
        while s.hasSuffix("/") { s = s.dropLast() }
        return String(s)
    }
}

extension HTTPField.Name {
    static let ifNoneExist = HTTPField.Name("If-None-Exist")!
    static let prefer = HTTPField.Name("Prefer")!
    static let breakGlassReason = HTTPField.Name("X-Break-Glass-Reason")!
}
