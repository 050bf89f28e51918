import FHIRModel

/// Whether one resource matches a `SearchQuery`, decided from the resource's own index entries
/// without reading the store: what a subscription asks of every committed change (a search run
/// over the store per change and subscription would not keep up). The semantics are those of the
/// SQL the stores run (`SearchSQL`): the same normalised values, ranges and prefixes.
///
/// Clauses that need other rows — chains, `_has`, terminology (`:below`, `:above`, `:in`) —
/// cannot be decided here: `matches` answers nil for them, and the caller asks the store (a
/// search with the resource's `_id` added: a point lookup).
public struct QueryMatcher: Sendable {
    public let query: SearchQuery
    /// Whether the query can be decided from a resource's entries alone.
    public let isLocal: Bool

    public init(_ query: SearchQuery) {
        self.query = query
        isLocal = query.sort.isEmpty && query.clauses.allSatisfy { clause in
            clause.values.allSatisfy { match in
                switch match {
                case .chain, .has, .tokenBelow, .tokenAbove, .inValueSet: return false
                default: return true
                }
            }
        }
    }

    /// A resource's index entries grouped by parameter, made once and matched against many queries.
    public struct Entries: Sendable {
        public let all: [IndexEntry]
        let byParameter: [String: [IndexValue]]

        public init(_ entries: [IndexEntry]) {
            all = entries
            var byParameter: [String: [IndexValue]] = [:]
            for e in entries { byParameter[e.parameter, default: []].append(e.value) }
            self.byParameter = byParameter
        }

        /// The keys under which `QueryMatcher.keys` files a query this resource may match.
        public var keys: Set<String> {
            var keys: Set<String> = []
            for e in all {
                switch e.value {
                case .token(_, let code): keys.insert(QueryMatcher.key(e.parameter, code))
                case .reference(_, let id?, _): keys.insert(QueryMatcher.key(e.parameter, "ref:" + id))
                default: continue
                }
            }
            return keys
        }
    }

    static func key(_ parameter: String, _ value: String) -> String { parameter + "\u{1}" + value }

    /// Keys that every resource matching the query has among `Entries.keys` — the values of one
    /// clause that names codes or references (`code=…`, `patient=…`) — so that a change is matched
    /// only against the queries filed under one of its own keys; nil: no such clause (the query is
    /// tried on every change of its type).
    public var keys: Set<String>? {
        guard isLocal else { return nil }
        for clause in query.clauses where !clause.negated {
            var keys: Set<String> = []
            let all = clause.values.allSatisfy { match in
                switch match {
                case .token(_, let code?):
                    for p in clause.stored { keys.insert(Self.key(p, code)) }
                    return true
                case .reference(_, let id):
                    for p in clause.stored { keys.insert(Self.key(p, "ref:" + id)) }
                    return true
                default:
                    return false
                }
            }
            if all, !keys.isEmpty { return keys }
        }
        return nil
    }

    /// - Parameters:
    ///   - entries: the resource's index entries (`IndexExtractor`).
    ///   - lastUpdated: microseconds since the epoch.
    /// - Returns: nil when a clause needs the store (`isLocal` is false).
    public func matches(type: String, id: String, lastUpdated: Int64, entries: [IndexEntry]) -> Bool? {
        matches(type: type, id: id, lastUpdated: lastUpdated, entries: Entries(entries))
    }

    public func matches(type: String, id: String, lastUpdated: Int64, entries: Entries) -> Bool? {
        guard type == query.type else { return false }
        guard isLocal else { return nil }
        let byParameter = entries.byParameter
        for clause in query.clauses {
            let values = clause.stored.flatMap { byParameter[$0] ?? [] }
            let any = clause.values.contains { match in
                switch match {
                case .id(let wanted): return id == wanted
                case .lastUpdated(let prefix, let low, let high): return Self.point(lastUpdated, prefix, low, high)
                case .missing(let missing): return values.isEmpty == missing
                case .compartment(let type, let target):
                    return entries.all.contains {
                        if case .reference(type, target, _) = $0.value { return true } else { return false }
                    }
                default: return values.contains { Self.matches(match, $0) }
                }
            }
            // `:not` keeps what has no matching value; `:missing` is not negated by it.
            if clause.negated ? any : !any { return false }
        }
        return true
    }

    static func matches(_ match: SearchQuery.Match, _ value: IndexValue) -> Bool {
        switch (match, value) {
        case (.token(let system, let code), .token(let s, let c)):
            if let code, code != c { return false }
            if let system { return system.isEmpty ? s == nil : s == system }
            return true
        case (.stringPrefix(let prefix), .string(let v, _)):
            return v.utf8.starts(with: prefix.utf8)
        case (.stringExact(let text), .string(_, let exact)):
            return exact == text
        case (.stringContains(let text), .string(let v, _)):
            return text.isEmpty || v.contains(text)
        case (.reference(let type, let id), .reference(let t, let i, _)):
            return i == id && (type == nil || t == type)
        case (.referenceURL(let url), .reference(_, _, let u)):
            return u == url
        case (.uri(let uri), .uri(let v)):
            return v == uri
        case (.uriBelow(let uri), .uri(let v)):
            return v.utf8.starts(with: uri.utf8)
        case (.date(let prefix, let l, let h), .date(let low, let high)):
            switch prefix {
            case .eq: return low >= l && high <= h
            case .ne: return !(low >= l && high <= h)
            case .gt: return high > h
            case .lt: return low < l
            case .ge: return high > h || (low >= l && high <= h)
            case .le: return low < l || (low >= l && high <= h)
            case .sa: return low >= h
            case .eb: return high <= l
            case .ap: return low < h && high > l
            }
        case (.quantity(let prefix, let v, let low, let high, let system, let code), _):
            guard let (x, s, c) = numeric(value) else { return false }
            if let code, c != code { return false }
            if let system, s != system { return false }
            switch prefix {
            case .eq: return x >= low && x < high
            case .ne: return !(x >= low && x < high)
            case .gt, .sa: return x > v
            case .lt, .eb: return x < v
            case .ge: return x >= v
            case .le: return x <= v
            case .ap: return x >= v - abs(v) * 0.1 && x <= v + abs(v) * 0.1
            }
        default:
            return false
        }
    }

    static func numeric(_ value: IndexValue) -> (Double, String?, String?)? {
        switch value {
        case .number(let n): return (n, nil, nil)
        case .quantity(let v, let s, let c): return (v, s, c)
        default: return nil
        }
    }

    /// A point in time (`_lastUpdated`) against a search range, as `SearchSQL.pointRange`.
    static func point(_ t: Int64, _ prefix: SearchQuery.Prefix, _ low: Int64, _ high: Int64) -> Bool {
        switch prefix {
        case .eq, .ap: return t >= low && t < high
        case .ne: return !(t >= low && t < high)
        case .gt, .sa: return t >= high
        case .lt, .eb: return t < low
        case .ge: return t >= low
        case .le: return t < high
        }
    }
}
