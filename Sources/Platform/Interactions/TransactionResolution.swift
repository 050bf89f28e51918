import Access
import FHIRModel
import Store

/// How a transaction's entries find what they point at: conditional URLs searched together where
/// they can be, and references to other entries or to search results rewritten to `Type/id`.
extension BundleProcessor {
    /// A transaction's conditional URLs that each name one identifier (`identifier=system|value`,
    /// with the same other criteria), searched together per type: when none of the identifiers
    /// is stored yet — new results and visits, a feed's usual case — one search and one
    /// assumption answer them all, instead of one each. Where something matches, each is searched
    /// on its own as before. `parsed` keeps the queries parsed here.
    func absentIdentifiers(_ entries: [Entry], scope: ReadScope) async throws
        -> (absent: Set<String>, parsed: [String: SearchQuery], assumptions: [Assumption]) {
        var groups: [(type: String, others: [SearchQuery.Clause], members: [(url: String, value: SearchQuery.Match)])] = []
        var parsed: [String: SearchQuery] = [:]
        for e in entries {
            let (path, query) = splitURL(e.url)
            let conditional: (type: String, query: String)?
            switch e.method {
            case "POST": conditional = e.ifNoneExist.flatMap { q in e.resource?["resourceType"]?.stringValue.map { ($0, q) } }
            case "PUT", "PATCH", "DELETE": conditional = query.flatMap { q in path.contains("/") ? nil : (path, q) }
            default: conditional = nil
            }
            guard let (type, q) = conditional, FHIRSchema.r4.isResourceType(type),
                  (try? service.policy.authorize(service.principal, .search, type)) != nil,
                  let search = try? conditionals.parse(type: type, query: q) else { continue }
            parsed[type + "?" + q] = search.scoped(scope)
            let identifiers = search.clauses.indices.filter { search.clauses[$0].parameter == "identifier" }
            guard identifiers.count == 1, !search.clauses[identifiers[0]].negated, search.sort.isEmpty,
                  search.clauses[identifiers[0]].values.count == 1, case .token(_?, _?) = search.clauses[identifiers[0]].values[0] else { continue }
            var others = search.clauses
            let value = others.remove(at: identifiers[0]).values[0]
            if let g = groups.firstIndex(where: { $0.type == type && $0.others == others }) {
                groups[g].members.append((type + "?" + q, value))
            } else {
                groups.append((type, others, [(type + "?" + q, value)]))
            }
        }
        var absent = Set<String>()
        var assumptions: [Assumption] = []
        for g in groups where g.members.count > 1 {
            let union = SearchQuery(type: g.type, clauses: g.others + [.init(parameter: "identifier", values: g.members.map(\.value))],
                                    scope: scope)
            guard try await service.store.search(union, limit: 1).isEmpty else { continue }
            absent.formUnion(g.members.map(\.url))
            assumptions.append(Assumption(query: union, expected: []))
        }
        return (absent, parsed, assumptions)
    }

    func rewriteReferences(_ value: JSON, aliases: [String: String], at: String,
                           resolve: (String, String) async throws -> [ResourceKey]) async throws -> JSON {
        try await rewritten(value, aliases: aliases, at: at, resolve: resolve) ?? value
    }

    /// `value` with its references rewritten, or nil when none needs it (most objects of a
    /// resource: nothing is copied for them).
    private func rewritten(_ value: JSON, aliases: [String: String], at: String,
                           resolve: (String, String) async throws -> [ResourceKey]) async throws -> JSON? {
        switch value {
        case .object(var o):
            var changed = false
            for (i, member) in o.members.enumerated() {
                let new: JSON?
                if member.key == "reference", let ref = member.value.stringValue {
                    new = try await rewrittenReference(ref, aliases: aliases, at: at, resolve: resolve)
                } else if let uri = member.value.stringValue {
                    // An entry's fullUrl in a uri/url element (Attachment.url to a Binary): rewritten too.
                    new = uri.hasPrefix("urn:uuid:") ? aliases[uri].map { alias in .string(baseURL.map { $0 + "/" + alias } ?? alias) } : nil
                } else {
                    new = try await rewritten(member.value, aliases: aliases, at: at, resolve: resolve)
                }
                if let new {
                    o.replaceValue(at: i, with: new)
                    changed = true
                }
            }
            return changed ? .object(o) : nil
        case .array(var items):
            var changed = false
            for i in items.indices {
                if let new = try await rewritten(items[i], aliases: aliases, at: at, resolve: resolve) {
                    items[i] = new
                    changed = true
                }
            }
            return changed ? .array(items) : nil
        default:
            return nil
        }
    }

    private func rewrittenReference(_ ref: String, aliases: [String: String], at: String,
                                    resolve: (String, String) async throws -> [ResourceKey]) async throws -> JSON? {
        if let target = aliases[ref] { return .string(target) }
        if case .conditional(let type, let query) = ReferenceSyntax.parse(ref) {
            let matches = try await resolve(type, query)
            guard matches.count == 1 else {
                throw FHIRError(matches.isEmpty ? .notFound : .preconditionFailed, code: matches.isEmpty ? "not-found" : "multiple-matches",
                                "Conditional reference '\(ref)' matched \(matches.count) resources (exactly one required)", at: at)
            }
            return .string(matches[0].description)
        }
        if ref.hasPrefix("urn:uuid:") || ref.hasPrefix("urn:oid:") {
            throw FHIRError(.invalid, code: "not-found", "Reference '\(ref)' names no entry of this transaction", at: at)
        }
        return nil
    }
}
