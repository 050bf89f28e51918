import Access
import FHIRModel
import Foundation
import NIOCore
import Store

/// The Bundles a FHIR server answers with — searchsets, history, the audit trail — with their
/// paging links and the total rule, built by the core for any transport (ADR 019): the HTTP layer
/// only sends the bytes. `baseURL` is the server's public base (`https://host/fhir`).
extension SearchService {
    /// Type-level search (`GET /Type?...`, `POST /Type/_search`, a compartment search with
    /// `selfPath` `Patient/{id}/Observation`) as a searchset Bundle.
    public func searchset(type: String, query: String, strict: Bool, baseURL base: String, selfPath: String? = nil) async throws -> [UInt8] {
        let parsed = try parse(type: type, query: query, strict: strict)
        let query = query.split(separator: "&").filter { !$0.hasPrefix("_compartment=") }.joined(separator: "&")
        let result = try await run(parsed)
        // A total is cheap when everything fits in one page; otherwise only on request (_total).
        var total = result.total
        if total == nil && !parsed.totalNone && result.next == nil && parsed.page.offset == 0 && parsed.page.after == nil {
            total = result.matches.count
        }
        let paging: Set<String> = ["_count", "_offset", "_after", "_snapshot"]
        let kept = query.split(separator: "&").filter { pair in
            !paging.contains(String(pair.split(separator: "=", maxSplits: 1).first ?? ""))
        }.joined(separator: "&")
        let path = selfPath ?? type
        let selfBase = "\(base)/\(path)?" + (kept.isEmpty ? "" : kept + "&")
        var links: [(relation: String, url: String)] = [("self", "\(base)/\(path)?\(query)")]
        if let next = result.next {
            var cursor = "_count=\(next.count)&_snapshot=\(next.snapshot ?? 0)"
            if let after = next.after { cursor += "&_after=\(after)" } else { cursor += "&_offset=\(next.offset)" }
            links.append(("next", selfBase + cursor))
        }
        var writer = BundleWriter(type: "searchset", total: total, links: links)
        if !parsed.summaryCount {
            let match: [(String, JSON)] = [("search", .object(JSONObject([("mode", .string("match"))])))]
            let include: [(String, JSON)] = [("search", .object(JSONObject([("mode", .string("include"))])))]
            for r in result.matches {
                writer.add(fullUrl: "\(base)/\(r.key)", resource: ResourceSubset.content(r.content, parsed.summary, parsed.elements), extra: match)
            }
            for r in result.included {
                writer.add(fullUrl: "\(base)/\(r.key)", resource: ResourceSubset.content(r.content, parsed.summary, parsed.elements), extra: include)
            }
        }
        if !parsed.warnings.isEmpty {
            let outcome = ByteBuffer(bytes: JSONWriter.bytes(OperationOutcome.make(parsed.warnings)))
            writer.add(fullUrl: nil, resource: outcome, extra: [("search", .object(JSONObject([("mode", .string("outcome"))])))])
        }
        return writer.bytes()
    }
}

extension FHIRService {
    /// History of one resource, a type or everything, as a history Bundle paged by `_count`,
    /// `_offset` and `_snapshot`, narrowed by `_since` and `_at`.
    public func historyBundle(type: String?, id: String?, parameters: [(String, String)], baseURL base: String) async throws -> JSON {
        if let type { try checkType(type) }
        func parameter(_ name: String) -> String? { parameters.first { $0.0 == name }?.1 }
        func integer(_ name: String) throws(FHIRError) -> Int? { try OperationRequest.nonNegative(name, parameter(name)) }
        var query = HistoryQuery(type: type, id: id)
        query.count = min(max(try integer("_count") ?? 20, 1), 1000)
        if let raw = parameter("_offset") {
            guard let n = Int(raw), n >= 0, n <= SearchQueryParser.maxOffset else {
                throw FHIRError(.invalid, code: "value", "_offset must be an integer from 0 to \(SearchQueryParser.maxOffset)", at: "_offset")
            }
            query.offset = n
        }
        query.snapshot = try integer("_snapshot").map(Int64.init)
        if let since = parameter("_since") {
            guard let t = FHIRDateTime.parse(since, kind: .instant) ?? FHIRDateTime.parse(since, kind: .dateTime) else {
                throw FHIRError(.invalid, code: "value", "Invalid _since '\(since)': expected an instant", at: "_since")
            }
            query.since = t.low
        }
        if let at = parameter("_at") {
            guard let t = FHIRDateTime.parse(at, kind: .dateTime) else {
                throw FHIRError(.invalid, code: "value", "Invalid _at '\(at)': expected a date or dateTime", at: "_at")
            }
            query.at = (t.low, t.high)
        }
        let page = try await history(query)
        var entries: [JSON] = []
        for r in page.records {
            var entry = JSONObject()
            entry["fullUrl"] = .string("\(base)/\(r.key)")
            if let c = r.content, let parsed = try? JSONParser.parse(c.readableBytesView) { entry["resource"] = parsed }
            let method = r.method == "PATCH" ? "PATCH" : r.method
            let url = r.method == "POST" ? r.key.type : r.key.description
            entry["request"] = .object(JSONObject([("method", .string(method)), ("url", .string(url))]))
            let disposition: InteractionResult.Disposition = r.deleted ? .deleted : (r.version == 1 ? .created : .ok)
            entry["response"] = .object(JSONObject([("status", .string(statusLine(disposition.restStatus))), ("etag", .string(ETag.make(r.version))),
                                                     ("lastModified", .string(FHIRDateTime.formatInstant(micros: r.lastUpdated)))]))
            entries.append(.object(entry))
        }
        let path = [type, id].compactMap { $0 }.joined(separator: "/")
        let selfBase = base + (path.isEmpty ? "" : "/" + path) + "/_history"
        var keep = ""
        for name in ["_since", "_at"] {
            if let value = parameter(name) { keep += "&\(name)=" + (value.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? value) }
        }
        func link(_ relation: String, _ offset: Int) -> JSON {
            .object(JSONObject([("relation", .string(relation)),
                                ("url", .string("\(selfBase)?_count=\(query.count)&_offset=\(offset)&_snapshot=\(page.snapshot)\(keep)"))]))
        }
        var links = [link("self", query.offset)]
        if query.offset + query.count < page.total { links.append(link("next", query.offset + query.count)) }
        if query.offset > 0 { links.append(link("previous", max(0, query.offset - query.count))) }
        return .object(JSONObject([("resourceType", .string("Bundle")), ("type", .string("history")), ("total", .number(String(page.total))),
                                   ("link", .array(links)), ("entry", .array(entries))]))
    }

    /// `AuditEvent?patient=...`: the audit trail, newest first, paged by `_before`.
    public func auditSearchset(query: String, baseURL base: String) async throws -> [UInt8] {
        let parameters = query.split(separator: "&").map { pair -> (String, String) in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in String(s).removingPercentEncoding ?? String(s) }
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
        let page = try await AuditLog(service: self).search(parameters)
        var links: [(relation: String, url: String)] = [("self", "\(base)/AuditEvent?\(query)")]
        if let next = page.next {
            let kept = parameters.filter { $0.0 != "_before" }.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? $0.1)" }
            links.append(("next", "\(base)/AuditEvent?" + (kept + ["_before=\(next)"]).joined(separator: "&")))
        }
        var writer = BundleWriter(type: "searchset", total: nil, links: links)
        let match: [(String, JSON)] = [("search", .object(JSONObject([("mode", .string("match"))])))]
        for event in page.events { writer.add(fullUrl: nil, resource: event, extra: match) }
        return writer.bytes()
    }
}

extension ResourceSubset {
    /// `_summary` / `_elements`: the subset of a stored resource, marked SUBSETTED.
    public static func content(_ content: ByteBuffer?, _ mode: SummaryMode, _ elements: [String]?) -> ByteBuffer? {
        guard mode != .full || elements != nil, let content,
              case .object(let o)? = try? JSONParser.parse(content.readableBytesView),
              let out = apply(o, summary: mode, elements: elements) else { return content }
        return ByteBuffer(bytes: JSONWriter.bytes(.object(out)))
    }
}
