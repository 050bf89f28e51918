import Access
import Foundation
import FHIRModel
import NIOCore
import Store

/// Processes `POST /` Bundles. A transaction commits as one store unit (all or nothing),
/// with `urn:uuid:` full URLs and conditional references resolved and rewritten;
/// a batch runs each entry on its own.
public struct BundleProcessor: Sendable {
    let service: FHIRService
    var conditionals: SearchQueryParser { service.conditionals }
    /// The server's public base (`https://host/fhir`), when a request brought the Bundle: an
    /// entry's fullUrl in a `url` element (Attachment.url to a Binary) becomes the absolute URL of
    /// the resource, as the `url` type asks. Without it, `Type/id`.
    public var baseURL: String?

    public init(service: FHIRService) {
        self.service = service
    }

    /// One entry's answer, in the shape of `Bundle.entry.response` (+ resource).
    public struct EntryResponse: Sendable {
        public var status: String
        public var location: String?
        public var etag: String?
        public var lastModified: Int64?
        public var resource: ByteBuffer?
        public var outcome: JSON?
    }

    struct Entry {
        let index: Int
        let method: String
        let url: String
        let fullUrl: String?
        var resource: JSON?
        let ifNoneExist: String?
        let ifMatch: Int?
    }

    public func process(_ bundle: JSON, returnRepresentation: Bool) async throws -> (type: String, entries: [EntryResponse]) {
        guard bundle["resourceType"]?.stringValue == "Bundle" else {
            throw FHIRError(.invalid, code: "invalid", "POST to the base URL takes a Bundle")
        }
        guard let type = bundle["type"]?.stringValue, type == "transaction" || type == "batch" else {
            throw FHIRError(.invalid, code: "invalid", "Bundle.type must be 'transaction' or 'batch'", at: "Bundle.type")
        }
        let parsed = parseEntries(bundle)
        if type == "transaction" {
            let problems = parsed.flatMap { if case .failure(let e) = $0 { return e.issues } else { return [] } }
            if !problems.isEmpty { throw FHIRError(.invalid, problems) }
            let entries = parsed.compactMap { try? $0.get() }
            return ("transaction-response", try await transaction(entries, returnRepresentation: returnRepresentation))
        }
        return ("batch-response", await batch(parsed, returnRepresentation: returnRepresentation))
    }

    /// Every entry, or the problem with it. A transaction fails on any problem; a batch answers
    /// a malformed entry with its own error and goes on with the rest.
    func parseEntries(_ bundle: JSON) -> [Result<Entry, FHIRError>] {
        var result: [Result<Entry, FHIRError>] = []
        for (i, raw) in (bundle["entry"]?.arrayValue ?? []).enumerated() {
            var issues: [Issue] = []
            defer { if !issues.isEmpty { result.append(.failure(FHIRError(.invalid, issues))) } }
            let at = "Bundle.entry[\(i)]"
            guard let request = raw["request"], let method = request["method"]?.stringValue, let url = request["url"]?.stringValue else {
                issues.append(Issue(code: "required", "Each entry needs request.method and request.url", at: "\(at).request"))
                continue
            }
            guard ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
                issues.append(Issue(code: "value", "Unsupported request.method '\(method)'", at: "\(at).request.method"))
                continue
            }
            if (method == "POST" || method == "PUT") && raw["resource"] == nil {
                issues.append(Issue(code: "required", "\(method) entries need a resource", at: "\(at).resource"))
                continue
            }
            var ifMatch: Int?
            if let etag = request["ifMatch"]?.stringValue {
                guard let v = ETag.version(etag) else {
                    issues.append(Issue(code: "value", "Invalid ifMatch '\(etag)'", at: "\(at).request.ifMatch"))
                    continue
                }
                ifMatch = v
            }
            result.append(.success(Entry(index: i, method: method, url: url, fullUrl: raw["fullUrl"]?.stringValue,
                                         resource: raw["resource"], ifNoneExist: request["ifNoneExist"]?.stringValue, ifMatch: ifMatch)))
        }
        return result
    }

    // MARK: transaction

    func transaction(_ entries: [Entry], returnRepresentation: Bool) async throws -> [EntryResponse] {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await transactionAttempt(entries, returnRepresentation: returnRepresentation)
            } catch StoreError.conditionChanged where attempt < FHIRService.maxAttempts {
                continue
            } catch let error as StoreError {
                throw FHIRError.from(error)
            }
        }
    }

    /// What a write entry resolved to before commit.
    enum Plan {
        case write(key: ResourceKey, method: String)
        case existing(ResourceKey)          // conditional create that matched
        case delete(ResourceKey?)           // nil: conditional delete matched nothing
        case read
    }

    private func transactionAttempt(_ entries: [Entry], returnRepresentation: Bool) async throws -> [EntryResponse] {
        let store = service.store
        var assumptions: [Assumption] = []
        var plans: [Int: Plan] = [:]
        var aliases: [String: String] = [:]   // fullUrl → Type/id
        var seenKeys = Set<ResourceKey>()
        var mustNotExist = Set<ResourceKey>()   // conditional updates that matched nothing but carry an id
        var madeHere = Set<ResourceKey>()       // conditional updates that matched nothing: ids made here
        func claim(_ key: ResourceKey, _ at: String) throws(FHIRError) {
            guard seenKeys.insert(key).inserted else {
                throw FHIRError(.invalid, code: "invalid", "\(key) is the target of more than one entry in this transaction", at: at)
            }
        }
        // Conditional URLs and references match only what the caller may read (ADR 016).
        let scope = try await service.readScope()
        let known = try await absentIdentifiers(entries, scope: scope)
        assumptions += known.assumptions
        func resolveConditional(_ type: String, _ query: String, _ at: String) async throws -> [ResourceKey] {
            do { try await service.authorize(.search, type) } catch { throw relocated(error, at) }
            if known.absent.contains(type + "?" + query) { return [] }
            var parsed: SearchQuery
            if let p = known.parsed[type + "?" + query] {
                parsed = p
            } else {
                do { parsed = try conditionals.parse(type: type, query: query) } catch { throw relocated(error, at) }
            }
            parsed = parsed.scoped(scope)
            let matches = try await store.search(parsed, limit: 2)
            assumptions.append(Assumption(query: parsed, expected: matches))
            return matches
        }
        // Process in the order the spec gives: DELETE, POST, PUT/PATCH, GET.
        let order = ["DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3]
        let ordered = entries.sorted { (order[$0.method]!, $0.index) < (order[$1.method]!, $1.index) }
        for e in ordered {
            let at = "Bundle.entry[\(e.index)]"
            let (path, query) = splitURL(e.url)
            let parts = path.split(separator: "/").map(String.init)
            switch e.method {
            case "DELETE":
                if let type = parts.first {
                    try service.checkType(type)
                    do {
                        try await service.authorize(query == nil ? .delete : .conditionalDelete, type)
                        try IngestPipeline.checkWritable(type)
                    } catch { throw relocated(error, at) }
                }
                if let query, parts.count == 1 {
                    let matches = try await resolveConditional(parts[0], query, at)
                    if matches.count > 1 { throw FHIRError(.preconditionFailed, code: "multiple-matches", "Conditional delete matched more than one resource", at: at) }
                    if let m = matches.first { try claim(m, at) }
                    plans[e.index] = .delete(matches.first)
                } else if parts.count == 2 {
                    let key = ResourceKey(parts[0], parts[1])
                    try claim(key, at)
                    plans[e.index] = .delete(key)
                } else {
                    throw FHIRError(.invalid, code: "invalid", "Invalid DELETE url '\(e.url)'", at: "\(at).request.url")
                }
            case "POST":
                guard let type = e.resource?["resourceType"]?.stringValue, parts.count == 1, parts[0] == type else {
                    throw FHIRError(.invalid, code: "invalid", "POST url must be the resource's type", at: "\(at).request.url")
                }
                do { try await service.authorize(e.ifNoneExist == nil ? .create : .conditionalCreate, type) } catch { throw relocated(error, at) }
                if let ifNoneExist = e.ifNoneExist {
                    let matches = try await resolveConditional(type, ifNoneExist, at)
                    if matches.count > 1 { throw FHIRError(.preconditionFailed, code: "multiple-matches", "ifNoneExist matched more than one \(type)", at: at) }
                    if let m = matches.first {
                        try claim(m, at)
                        plans[e.index] = .existing(m)
                        if let f = e.fullUrl { aliases[f] = m.description }
                        continue
                    }
                }
                let key = ResourceKey(type, IngestPipeline.newID())
                plans[e.index] = .write(key: key, method: "POST")
                if let f = e.fullUrl { aliases[f] = key.description }
            case "PUT", "PATCH":
                let key: ResourceKey
                if let query, parts.count == 1 {
                    let matches = try await resolveConditional(parts[0], query, at)
                    if matches.count > 1 { throw FHIRError(.preconditionFailed, code: "multiple-matches", "Conditional update matched more than one resource", at: at) }
                    key = matches.first ?? ResourceKey(parts[0], e.resource?["id"]?.stringValue ?? IngestPipeline.newID())
                    if matches.isEmpty, e.resource?["id"] != nil { mustNotExist.insert(key) }
                    if matches.isEmpty, e.resource?["id"] == nil { madeHere.insert(key) }
                } else if parts.count == 2 {
                    key = ResourceKey(parts[0], parts[1])
                } else {
                    throw FHIRError(.invalid, code: "invalid", "Invalid \(e.method) url '\(e.url)'", at: "\(at).request.url")
                }
                try service.checkType(key.type)
                let interaction: Interaction = query != nil && parts.count == 1 ? .conditionalUpdate : (e.method == "PATCH" ? .patch : .update)
                do { try await service.authorize(interaction, key.type) } catch { throw relocated(error, at) }
                try claim(key, at)
                plans[e.index] = .write(key: key, method: e.method)
                if let f = e.fullUrl { aliases[f] = key.description }
            default:
                plans[e.index] = .read
            }
        }
        // Rewrite references, resolving conditional references by search.
        var writes: [WriteRequest] = []
        var keyForEntry: [Int: ResourceKey] = [:]
        var implicitIfMatch = false
        for e in ordered {
            let at = "Bundle.entry[\(e.index)]"
            switch plans[e.index]! {
            case .write(let key, let method):
                var resource: JSON
                var ifMatch = e.ifMatch
                var patchedFrom: JSONObject?
                if method == "PATCH" {
                    guard let record = try await store.read(key), !record.deleted, let bytes = record.content else {
                        throw FHIRError(.notFound, code: "not-found", "\(key) does not exist", at: at)
                    }
                    // As `FHIRService.patch`: refused unseen when the writer may not change it.
                    do { try await service.writePipeline.checkMayChange(record, .patch) } catch let error as FHIRError { throw relocated(error, at) }
                    let patchDoc = try patchDocument(e, at: at)
                    let stored = try service.pipeline.parseStored(bytes)
                    patchedFrom = stored.objectValue
                    resource = try JSONPatch.apply(patchDoc, to: stored)
                    if ifMatch == nil { ifMatch = record.version; implicitIfMatch = true }
                } else {
                    resource = e.resource!
                }
                resource = try await rewriteReferences(resource, aliases: aliases, at: "\(at).resource") { type, query in
                    try await resolveConditional(type, query, at)
                }
                if method == "PUT" {
                    if let bodyID = resource["id"]?.stringValue {
                        if bodyID != key.id {
                            throw FHIRError(.invalid, code: "invalid", "Resource id '\(bodyID)' does not match \(key)", at: "\(at).resource.id")
                        }
                    } else if splitURL(e.url).query == nil {
                        throw FHIRError(.invalid, code: "required", "The resource in an update must have an id", at: "\(at).resource.id")
                    }
                }
                if case .object(var o) = resource { o["id"] = .string(key.id); resource = .object(o) }
                let write = WriteRequest(key: key, method: method, resource: resource, ifMatch: ifMatch,
                                         mustNotExist: mustNotExist.contains(key), newID: madeHere.contains(key), location: "\(at).resource")
                writes.append(patchedFrom.map { write.keepingStream(of: $0, service.pipeline.protection) } ?? write)
                keyForEntry[e.index] = key
            case .delete(let key):
                if let key { writes.append(.delete(key, ifMatch: e.ifMatch)) }
            default:
                continue
            }
        }
        let outcomes: [WriteOutcome]
        do {
            outcomes = try await service.writePipeline.write(writes, assumptions: assumptions, as: .transaction)
        } catch let error as FHIRError where error.category == .preconditionFailed && implicitIfMatch {
            // A PATCH pinned the version it read and another write came first: prepare again.
            throw StoreError.conditionChanged
        }
        var byKey: [ResourceKey: WriteOutcome] = [:]
        for o in outcomes { byKey[o.key] = o }
        var responses: [EntryResponse] = []
        for e in entries {
            switch plans[e.index]! {
            case .write:
                let o = byKey[keyForEntry[e.index]!]!
                responses.append(EntryResponse(status: o.created ? "201 Created" : "200 OK", location: "\(o.key)/_history/\(o.version)",
                                               etag: ETag.make(o.version), lastModified: o.lastUpdated,
                                               resource: returnRepresentation
                                                   ? service.presenter.content(o.content.map { ByteBuffer(bytes: $0) }, type: o.key.type) : nil,
                                               // Warnings about a write that stands (a duplicate test), as its entry's outcome.
                                               outcome: o.warnings.isEmpty ? nil : OperationOutcome.make(o.warnings)))
            case .existing(let key):
                let record = try await store.read(key)
                if let record {
                    // The resource an ifNoneExist found is shown (its id, version, maybe itself): a read.
                    try await service.trail.appendRead(.conditionalCreate, type: key.type, records: [record],
                                                       query: e.ifNoneExist.map(IdentifierPresenter.auditedQuery))
                }
                responses.append(EntryResponse(status: "200 OK", location: "\(key)/_history/\(record?.version ?? 1)",
                                               etag: record.map { ETag.make($0.version) }, lastModified: record?.lastUpdated,
                                               resource: returnRepresentation ? service.presenter.content(record?.content, type: key.type) : nil))
            case .delete(let key):
                let changed = key.flatMap { byKey[$0]?.changed } ?? false
                responses.append(EntryResponse(status: changed ? "204 No Content" : "200 OK"))
            case .read:
                responses.append(await read(e))
            }
        }
        return responses
    }

    // MARK: batch

    func batch(_ entries: [Result<Entry, FHIRError>], returnRepresentation: Bool) async -> [EntryResponse] {
        await withTaskGroup(of: (Int, EntryResponse).self) { group in
            for (position, parsed) in entries.enumerated() {
                switch parsed {
                case .success(let e):
                    group.addTask { (position, await batchEntry(e, returnRepresentation: returnRepresentation)) }
                case .failure(let error):
                    group.addTask { (position, EntryResponse(status: statusLine(error.category.restStatus), outcome: OperationOutcome.make(error.issues))) }
                }
            }
            var result = [EntryResponse?](repeating: nil, count: entries.count)
            for await (i, r) in group { result[i] = r }
            return result.map { $0! }
        }
    }

    func batchEntry(_ e: Entry, returnRepresentation: Bool) async -> EntryResponse {
        let at = "Bundle.entry[\(e.index)]"
        let (path, query) = splitURL(e.url)
        let parts = path.split(separator: "/").map(String.init)
        do {
            let result: InteractionResult
            switch (e.method, parts.count, query) {
            case ("POST", 1, _):
                result = try await service.create(parts[0], body: e.resource!, ifNoneExist: e.ifNoneExist)
            case ("PUT", 2, _):
                result = try await service.update(parts[0], parts[1], body: e.resource!, ifMatch: e.ifMatch)
            case ("PUT", 1, let q?):
                result = try await service.conditionalUpdate(parts[0], query: q, body: e.resource!, ifMatch: e.ifMatch)
            case ("PATCH", 2, _):
                result = try await service.patch(parts[0], parts[1], patch: try patchDocument(e, at: at), ifMatch: e.ifMatch)
            case ("PATCH", 1, let q?):
                result = try await service.conditionalPatch(parts[0], query: q, patch: try patchDocument(e, at: at))
            case ("DELETE", 2, _):
                result = try await service.delete(parts[0], parts[1], ifMatch: e.ifMatch)
            case ("DELETE", 1, let q?):
                result = try await service.conditionalDelete(parts[0], query: q)
            case ("GET", _, _), ("HEAD", _, _):
                return await read(e)
            default:
                throw FHIRError(.invalid, code: "invalid", "Unsupported \(e.method) url '\(e.url)'", at: "\(at).request.url")
            }
            return EntryResponse(status: statusLine(result.disposition.restStatus),
                                 location: result.key.flatMap { k in result.version.map { "\(k)/_history/\($0)" } },
                                 etag: result.version.map(ETag.make), lastModified: result.lastUpdated,
                                 resource: returnRepresentation ? result.content : nil,
                                 outcome: result.outcome ?? (result.warnings.isEmpty ? nil : OperationOutcome.make(result.warnings)))
        } catch let error as FHIRError {
            return EntryResponse(status: statusLine(error.category.restStatus), outcome: OperationOutcome.make(error.issues))
        } catch {
            return EntryResponse(status: "500 Internal Server Error", outcome: OperationOutcome.make(FHIRError.internalError(error).issues))
        }
    }

    // MARK: helpers

    func read(_ e: Entry) async -> EntryResponse {
        let (path, _) = splitURL(e.url)
        let parts = path.split(separator: "/").map(String.init)
        do {
            let r: InteractionResult
            if parts.count == 2 {
                r = try await service.read(parts[0], parts[1])
            } else if parts.count == 4, parts[2] == "_history" {
                r = try await service.vread(parts[0], parts[1], version: parts[3])
            } else {
                throw FHIRError(.invalid, code: "not-supported", "Only reads (Type/id, Type/id/_history/v) are supported in Bundle GET entries so far")
            }
            return EntryResponse(status: "200 OK", etag: r.version.map(ETag.make), lastModified: r.lastUpdated, resource: r.content)
        } catch let error as FHIRError {
            return EntryResponse(status: statusLine(error.category.restStatus), outcome: OperationOutcome.make(error.issues))
        } catch {
            return EntryResponse(status: "500 Internal Server Error", outcome: OperationOutcome.make(FHIRError.internalError(error).issues))
        }
    }

    func patchDocument(_ e: Entry, at: String) throws(FHIRError) -> JSON {
        // In a Bundle, a JSON Patch travels as a Binary resource (http://hl7.org/fhir/R4/http.html#patch).
        guard let r = e.resource, r["resourceType"]?.stringValue == "Binary", let data = r["data"]?.stringValue,
              let bytes = Base64.decode(data) else {
            throw FHIRError(.invalid, code: "invalid", "PATCH entries carry the JSON Patch as a Binary resource with base64 data", at: "\(at).resource")
        }
        return try service.pipeline.parse(bytes)
    }

    func relocated(_ error: FHIRError, _ at: String) -> FHIRError {
        FHIRError(error.category, error.issues.map { Issue($0.severity, code: $0.code, $0.diagnostics, at: at) })
    }
}

/// Splits a Bundle request URL into path and query. Only the path part (before `?`) may carry a
/// server base (`http://host/fhir/Patient/1`); the query can contain URLs of its own.
func splitURL(_ url: String) -> (path: String, query: String?) {
    var path = Substring(url)
    var query: String?
    if let q = path.firstIndex(of: "?") {
        query = String(path[path.index(after: q)...])
        path = path[..<q]
    }
    if path.containsBytes("://"), let r = path.range(of: "/fhir/") { path = path[r.upperBound...] }
    while path.hasPrefix("/") { path = path.dropFirst() }
    return (String(path), query)
}

/// The HTTP status line for a code, as Bundle.entry.response.status carries it.
public func statusLine(_ status: Int) -> String {
    let reasons = [200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
                   410: "Gone", 412: "Precondition Failed", 422: "Unprocessable Entity", 500: "Internal Server Error"]
    return "\(status) \(reasons[status] ?? "")".trimmingSpace()
}

extension String {
    func trimmingSpace() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Weak ETags carrying the version id: `W/"3"`.
public enum ETag {
    public static func make(_ version: Int) -> String { "W/\"\(version)\"" }

    /// The version in an `If-Match` value: `W/"3"`, `"3"` or `3`.
    public static func version(_ s: String) -> Int? {
        var t = Substring(s.trimmingSpace())
        if t.hasPrefix("W/") { t = t.dropFirst(2) }
        if t.hasPrefix("\""), t.hasSuffix("\""), t.count >= 2 { t = t.dropFirst().dropLast() }
        return Int(t)
    }
}
