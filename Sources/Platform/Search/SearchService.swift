import Access
import FHIRModel
import Identity
import Store

/// Runs searches: the matching page, then `_include` / `_revinclude` (with `:iterate`), on
/// behalf of a principal (`acting(as:)`): every type the search looks into (chains, `_has`)
/// needs search access, and included resources of types it may not read are left out.
public struct SearchService: Sendable {
    public let store: any ResourceStore
    public private(set) var principal: Principal = .nobody
    public private(set) var origin: RequestOrigin = .local
    /// For finding a resident's Patients when deciding on other facilities' data.
    public var masterIndex: MasterPatientIndex?
    /// False only for a benchmark's unaudited baseline.
    public var auditing = true
    let policy = AccessPolicy()
    /// Searched values that may be ID or phone numbers also look up their blind index codes.
    public var protection: IdentifierProtection? {
        didSet {
            parser = SearchQueryParser(protection: protection)
            parser.valueSets = valueSets != nil
        }
    }
    var parser = SearchQueryParser()
    /// Resolves `:in` / `:not-in` (the terminology module; nil: refused).
    public var valueSets: (any ValueSetCodes)? {
        didSet { parser.valueSets = valueSets != nil }
    }
    /// How many rounds `:iterate` follows references.
    static let maxIterations = 3

    public init(store: any ResourceStore) {
        self.store = store
    }

    public func acting(as principal: Principal, from origin: RequestOrigin = .local) -> SearchService {
        var copy = self
        copy.principal = principal
        copy.origin = origin
        return copy
    }

    var trail: AuditTrail { AuditTrail(store: store, principal: principal, origin: origin, enabled: auditing) }

    public struct Result: Sendable {
        public let matches: [ResourceRecord]
        public let included: [ResourceRecord]
        public let total: Int?
        public let next: PageRequest?
        public let search: ParsedSearch
    }

    public func parse(type: String, query: String, strict: Bool) throws(FHIRError) -> ParsedSearch {
        guard FHIRSchema.r4.isResourceType(type) else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown resource type '\(type)'")
        }
        var parsed = try parser.parseSearch(type: type, query: query, strict: strict)
        parsed.text = query
        return parsed
    }

    public func run(_ search: ParsedSearch) async throws -> Result {
        for type in search.query.typesSearched.sorted() {
            do {
                try policy.authorize(principal, .search, type)
                // Through a chain too (`AuditEvent?entity:Subscription.criteria=…`).
                for searched in search.query.parametersSearched where searched.type == type {
                    try policy.authorizeSearchParameters(principal, type: type, searched.parameters)
                }
            } catch {
                try? await trail.append(.search, type: type, entities: [], patients: [], query: IdentifierPresenter.auditedQuery(search.text),
                                        outcome: .denied(error.reason))
                throw FHIRError(.forbidden, code: "forbidden", error.reason)
            }
        }
        var page = search.page
        if search.summaryCount { page.count = 0 }
        // `_count=0` asks for the total only.
        if page.count == 0 { page.withTotal = true }
        // The access decision is part of the query (ADR 016): the match, its chains and `_has`, the
        // total and the includes see only rows the principal may read.
        let gate = PatientDataGate(store: store, masterIndex: masterIndex, principal: principal, origin: origin)
        let scope = try await gate.scope()
        var query = try await resolvingValueSets(search.query)
        if search.acrossFacilities { query = try await acrossFacilities(query) }
        let result = try await store.search(query.scoped(scope), page: page)
        var seen = Set(result.records.map(\.key))
        var included: [ResourceRecord] = []
        var frontier = result.records
        for round in 0..<(Self.maxIterations + 1) where !frontier.isEmpty {
            var found: [ResourceRecord] = []
            for spec in search.includes where round == 0 || spec.iterate {
                let sources = frontier.filter { $0.key.type == spec.sourceType }.map(\.key)
                found += try await store.include(from: sources, parameter: spec.parameter, targetType: spec.targetType, scope: scope)
            }
            for spec in search.revincludes where round == 0 || spec.iterate {
                let targets = frontier.map(\.key)
                found += try await store.revinclude(of: targets, sourceType: spec.sourceType, parameter: spec.parameter, scope: scope)
            }
            frontier = found.filter { policy.mayRead(principal, $0.key.type) && seen.insert($0.key).inserted }
            included += frontier
        }
        let matches = result.records
        try await trail.appendRead(.search, type: search.query.type, records: matches + included,
                                   query: IdentifierPresenter.auditedQuery(search.text))
        let presenter = IdentifierPresenter(protection: protection, principal: principal)
        return Result(matches: presenter.records(matches), included: presenter.records(included), total: result.total,
                      next: result.next, search: search)
    }
}

extension SearchService {
    /// The query with each Patient reference of its own clauses replaced by every Patient linked
    /// to the same master Person (`_mdm=true`). The access decision still judges each record.
    func acrossFacilities(_ query: SearchQuery) async throws -> SearchQuery {
        guard let masterIndex else { throw FHIRError(.invalid, code: "not-supported", "_mdm needs the master patient index", at: "_mdm") }
        var expanded = query
        expanded.clauses = []
        for clause in query.clauses {
            var values: [SearchQuery.Match] = []
            for match in clause.values {
                values.append(match)
                guard case .reference(let type, let id) = match, type == "Patient" || (type == nil && clause.parameter == "patient") else { continue }
                for linked in try await masterIndex.linkedRecords(of: ResourceKey("Patient", id))?.patients ?? [] where linked.id != id {
                    values.append(.reference(type: "Patient", id: linked.id))
                }
            }
            var c = SearchQuery.Clause(parameter: clause.parameter, parameterType: clause.parameterType, values: values,
                                       negated: clause.negated, stored: clause.stored)
            c.broad = clause.broad
            expanded.clauses.append(c)
        }
        return expanded
    }

    /// The query with each `:in` / `:not-in` value set replaced by its codes, at every level.
    func resolvingValueSets(_ query: SearchQuery) async throws -> SearchQuery {
        var budget = ValueSetLimits.maxSearchCodes
        return try await resolvingValueSets(query, budget: &budget)
    }

    private func resolvingValueSets(_ query: SearchQuery, budget: inout Int) async throws -> SearchQuery {
        var resolved = query
        for (i, clause) in query.clauses.enumerated() {
            var values: [SearchQuery.Match] = []
            var changed = false
            for match in clause.values {
                switch match {
                case .inValueSet(let url):
                    guard let valueSets else { throw FHIRError(.invalid, code: "not-supported", ":in needs the terminology service") }
                    let codes = try await valueSets.codes(inValueSet: url)
                    budget -= codes.count
                    guard budget >= 0 else {
                        throw FHIRError(.tooCostly, code: "too-costly",
                                        "The value sets of this search have more than \(ValueSetLimits.maxSearchCodes) codes (\(url): \(codes.count)); "
                                        + "search a hierarchy with :below", at: clause.parameter + (clause.negated ? ":not-in" : ":in"))
                    }
                    values += codes.map { .token(system: $0.system, code: $0.code) }
                    // An empty value set: nothing is in it (and everything is not-in it).
                    if codes.isEmpty { values.append(.inValueSet(url)) }
                    changed = true
                case .chain(let inner):
                    values.append(.chain(try await resolvingValueSets(inner, budget: &budget))); changed = true
                case .has(let inner, let parameter):
                    values.append(.has(try await resolvingValueSets(inner, budget: &budget), parameter: parameter)); changed = true
                default:
                    values.append(match)
                }
            }
            if changed {
                resolved.clauses[i] = SearchQuery.Clause(parameter: clause.parameter, parameterType: clause.parameterType, values: values,
                                                         negated: clause.negated, stored: clause.stored)
            }
            resolved.clauses[i].broad = try await isBroad(resolved.clauses[i], fromValueSet: clause.values.contains {
                if case .inValueSet = $0 { return true } else { return false }
            })
        }
        return resolved
    }

    /// Codes above which a token clause is taken to match a large share of the rows (ADR 022).
    static let broadCodes = 64

    /// A token clause of many codes — a long list, an `:in` value set, a `:below` over a large
    /// part of a hierarchy — is checked per candidate rather than collected first.
    /// (A plain list of values — identifiers, codes — keeps driving from the index: it names what it wants.)
    func isBroad(_ clause: SearchQuery.Clause, fromValueSet: Bool) async throws -> Bool {
        guard clause.parameterType == "token", !clause.negated else { return false }
        if fromValueSet { return clause.values.count > Self.broadCodes }
        var codes = 0, below = false
        for match in clause.values {
            guard case .tokenBelow(let system, let code) = match else { codes += 1; continue }
            below = true
            codes += try await store.concepts(system: system, version: nil, .below(code), after: nil, limit: Self.broadCodes + 1).count
        }
        return below && codes > Self.broadCodes
    }
}

/// The codes of a value set, for `:in` / `:not-in` (the terminology module provides it, ADR 022).
public protocol ValueSetCodes: Sendable {
    func codes(inValueSet canonical: String) async throws -> [(system: String, code: String)]
}

public enum ValueSetLimits {
    /// Codes the `:in` / `:not-in` clauses of one search take together (beyond, a hierarchy is
    /// searched with `:below`; PostgreSQL takes at most 65,535 values in a statement).
    public static let maxSearchCodes = 20_000
}

extension SearchQuery {
    /// The type searched and every type its chains and `_has` clauses look into.
    /// The parameters and sorts searched on each type, chains and `_has` included.
    var parametersSearched: [(type: String, parameters: [String])] {
        var out = [(type, clauses.map(\.parameter) + sort.map(\.parameter))]
        for clause in clauses {
            for match in clause.values {
                switch match {
                case .chain(let inner), .has(let inner, _): out += inner.parametersSearched
                default: continue
                }
            }
        }
        return out
    }

    var typesSearched: Set<String> {
        var types: Set<String> = [type]
        for clause in clauses {
            for match in clause.values {
                switch match {
                case .chain(let inner), .has(let inner, _): types.formUnion(inner.typesSearched)
                default: continue
                }
            }
        }
        return types
    }
}
