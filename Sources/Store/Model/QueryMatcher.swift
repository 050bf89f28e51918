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

    public init(_ query: SearchQuery) {
        self.query = query
    }

    /// Whether the query can be decided from a resource's entries alone.
    public var isLocal: Bool {
        query.sort.isEmpty && query.clauses.allSatisfy { clause in
            clause.values.allSatisfy { match in
                switch match {
                case .chain, .has, .tokenBelow, .tokenAbove, .inValueSet: return false
                default: return true
                }
            }
        }
    }

    /// - Parameters:
    ///   - entries: the resource's index entries (`IndexExtractor`).
    ///   - lastUpdated: microseconds since the epoch.
    /// - Returns: nil when a clause needs the store (`isLocal` is false).
    public func matches(type: String, id: String, lastUpdated: Int64, entries: [IndexEntry]) -> Bool? {
        guard type == query.type else { return false }
        guard isLocal else { return nil }
        var byParameter: [String: [IndexValue]] = [:]
        for e in entries { byParameter[e.parameter, default: []].append(e.value) }
        for clause in query.clauses {
            let values = clause.stored.flatMap { byParameter[$0] ?? [] }
            let any = clause.values.contains { match in
                switch match {
                case .id(let wanted): return id == wanted
                case .lastUpdated(let prefix, let low, let high): return Self.point(lastUpdated, prefix, low, high)
                case .missing(let missing): return values.isEmpty == missing
                case .compartment(let type, let target):
                    return entries.contains {
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
