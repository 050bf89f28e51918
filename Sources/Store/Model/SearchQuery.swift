import FHIRModel

/// A parsed FHIR search on one resource type: clauses are ANDed, the values of a clause
/// ORed. Conditional interactions use the same type with exact semantics.
public struct SearchQuery: Sendable, Equatable {
    /// Comparison prefixes for ordered values (http://hl7.org/fhir/R4/search.html#prefix).
    public enum Prefix: String, Sendable, CaseIterable { case eq, ne, gt, lt, ge, le, sa, eb, ap }

    public indirect enum Match: Sendable, Equatable {
        /// `_id`
        case id(String)
        /// `_lastUpdated`, a range in microseconds.
        case lastUpdated(Prefix, low: Int64, high: Int64)
        /// token: `code` (any system), `system|code`, `|code` (system ""), `system|` (code nil).
        case token(system: String?, code: String?)
        /// token `:below` / `:above`: a code of `system` subsumed by `code` (or subsuming it), by
        /// the closure of a stored CodeSystem's hierarchy (`idx_closure`, ADR 022); the code itself
        /// matches even when the system is not loaded.
        case tokenBelow(system: String, code: String)
        case tokenAbove(system: String, code: String)
        /// token `:in` / `:not-in` (negated clause) as parsed: a value set's canonical URL, which
        /// the search service replaces by the set's codes before the store sees the query (one
        /// left unresolved matches nothing).
        case inValueSet(String)
        /// string: normalised starts-with (default), exact original text, normalised substring.
        case stringPrefix(String)
        case stringExact(String)
        case stringContains(String)
        /// reference to `type/id` (type nil: any type), or to an absolute URL / canonical.
        case reference(type: String?, id: String)
        case referenceURL(String)
        case uri(String)
        case uriBelow(String)
        /// date: the search range in microseconds.
        case date(Prefix, low: Int64, high: Int64)
        /// number or quantity: the value, the range its precision implies, and for quantities the unit.
        case quantity(Prefix, value: Double, low: Double, high: Double, system: String?, code: String?)
        /// `:missing=true|false`
        case missing(Bool)
        /// Chaining (`subject:Patient.name=x`): the reference points at a resource matching `query`.
        case chain(SearchQuery)
        /// In the compartment of `type/id`: the resource references it (any reference parameter).
        case compartment(type: String, id: String)
        /// Reverse chaining (`_has:Observation:patient:code=x`): some resource matching `query`
        /// references this one through its parameter `parameter`.
        case has(SearchQuery, parameter: String)
    }

    public struct Clause: Sendable, Equatable {
        public let parameter: String
        /// The parameter's type (`token`, `string`, ...), which names its index table.
        public let parameterType: String
        public let values: [Match]
        /// `:not` — resources with no matching value.
        public let negated: Bool
        /// The parameters whose index rows answer it: itself, or for a folded parameter
        /// (`combo-code`) those it is made of (`SearchParameterRegistry.stored`).
        public var stored: [String]
        /// Matches a large share of the rows (a whole chapter of a classification, hundreds of
        /// codes): checked per candidate in row order, never the set a page is drawn from, so a
        /// first page stops after its entries instead of collecting every match first.
        public var broad = false

        public init(parameter: String, parameterType: String = "token", values: [Match], negated: Bool = false, stored: [String]? = nil) {
            self.parameter = parameter
            self.parameterType = parameterType
            self.values = values
            self.negated = negated
            self.stored = stored ?? [parameter]
        }
    }

    public struct SortKey: Sendable, Equatable {
        public let parameter: String
        public let parameterType: String
        public let descending: Bool
        /// The parameters whose index rows hold its values (see `Clause.stored`).
        public var stored: [String]

        public init(parameter: String, parameterType: String, descending: Bool, stored: [String]? = nil) {
            self.parameter = parameter
            self.parameterType = parameterType
            self.descending = descending
            self.stored = stored ?? [parameter]
        }
    }

    public var type: String
    public var clauses: [Clause]
    public var sort: [SortKey]
    /// The rows the query may see, at every level (its chains and `_has` too): set by the service
    /// acting for a principal (ADR 016); the platform's own lookups see everything.
    public var scope: ReadScope

    public init(type: String, clauses: [Clause], sort: [SortKey] = [], scope: ReadScope = .everything) {
        self.type = type
        self.clauses = clauses
        self.sort = sort
        self.scope = scope
    }

    /// The same query, seeing only what `scope` lets it.
    public func scoped(_ scope: ReadScope) -> SearchQuery {
        var copy = self
        copy.scope = scope
        return copy
    }

    /// Whether the query keeps to a few named patients' records (`patient=`/`subject=` references
    /// to at most 50 Patients, or `_id`): its access decision is then asked of each row's own
    /// resident (`AccessSQL.condition(correlated:)`) rather than of every resident the reader treats.
    public var pinsFewPatients: Bool {
        clauses.contains { clause in
            guard !clause.negated, !clause.values.isEmpty, clause.values.count <= 50 else { return false }
            if clause.parameter == "_id" { return true }
            guard clause.parameter == "patient" || clause.parameter == "subject" else { return false }
            return clause.values.allSatisfy {
                if case .reference(let type, _) = $0 { return type == nil || type == "Patient" }
                return false
            }
        }
    }

    /// Whether the query names its few matches exactly: by `_id` or by a full `system|value`
    /// identifier (what conditional interactions send), so that it is a short indexed lookup
    /// whatever the other clauses are.
    public var isPointLookup: Bool {
        sort.isEmpty && clauses.contains { c in
            !c.negated && !c.values.isEmpty && c.values.allSatisfy { v in
                switch v {
                case .id: return c.parameter == "_id"
                case .token(_?, _?): return c.parameter == "identifier"
                default: return false
                }
            }
        }
    }
}

/// A page of search results.
public struct SearchPage: Sendable {
    public let records: [ResourceRecord]
    /// Total matches, when asked for.
    public let total: Int?
    /// The request for the next page; nil on the last page.
    public let next: PageRequest?
}

/// How a page is cut from the result. Only resources whose storage row id is at most
/// `snapshot` (fixed by the first page) take part, so resources created while a client pages
/// do not shift later pages. In the default order (storage order) pages continue after the
/// last row id seen (`after`), so deletions between pages skip nothing either; with `_sort`
/// pages continue by `offset`.
public struct PageRequest: Sendable, Equatable {
    public var count: Int
    public var offset: Int
    public var after: Int?
    public var snapshot: Int?
    public var withTotal: Bool

    public init(count: Int = 20, offset: Int = 0, after: Int? = nil, snapshot: Int? = nil, withTotal: Bool = false) {
        self.count = count
        self.offset = offset
        self.after = after
        self.snapshot = snapshot
        self.withTotal = withTotal
    }
}
