import Access
import FHIRModel
import Foundation
import Store

/// `_include` / `_revinclude` as requested: `Source:param[:Target]` or `*`.
public struct IncludeSpec: Sendable, Equatable {
    public let sourceType: String
    /// nil for `*` (every reference parameter).
    public let parameter: String?
    public let targetType: String?
    public let iterate: Bool
}

/// A search request as the platform understands it: the query, paging and result parameters,
/// and warnings about parameters it ignored.
public struct ParsedSearch: Sendable {
    public var query: SearchQuery
    public var page: PageRequest
    public var includes: [IncludeSpec] = []
    public var revincludes: [IncludeSpec] = []
    /// `_summary=count`: only the total.
    public var summaryCount = false
    /// `_summary=true|text|data|false`: how much of each resource to return.
    public var summary = SummaryMode.full
    /// `_total=none`.
    public var totalNone = false
    /// `_elements`: the top-level elements to return.
    public var elements: [String]?
    /// `_mdm=true` (HAPI MDM's name): a reference to a Patient stands for every Patient its master
    /// Person links, the resident's records at every facility (调阅).
    public var acrossFacilities = false
    /// Parameters that were ignored (lenient handling), as warnings for the OperationOutcome.
    public var warnings: [Issue] = []
    /// The query as the client sent it (for the audit event).
    public var text = ""
}

/// Parses FHIR search query strings (http://hl7.org/fhir/R4/search.html) into `SearchQuery`.
/// Conditional interactions use `parse(type:query:)`, which refuses anything it cannot evaluate
/// exactly: guessing would make a conditional write hit the wrong resource.
public struct SearchQueryParser: Sendable {
    let registry: SearchParameterRegistry
    /// Stored ID and phone numbers are indexed by their blind index codes: a token value that may
    /// be one is looked up both as written and blinded.
    let protection: IdentifierProtection?
    public static let defaultCount = 20
    public static let maxCount = 1000

    /// `:in` / `:not-in` are parsed (into `Match.inValueSet`) only where a search service will
    /// resolve them; conditional interactions refuse them.
    public var valueSets = false

    public init(registry: SearchParameterRegistry = .r4, protection: IdentifierProtection? = nil) {
        self.registry = registry
        self.protection = protection
    }

    /// Conditional interactions: strict, no result parameters.
    public func parse(type: String, query: String) throws(FHIRError) -> SearchQuery {
        let parsed = try parseSearch(type: type, query: query, strict: true)
        guard !parsed.query.clauses.isEmpty else {
            throw FHIRError(.preconditionFailed, code: "invalid", "A conditional interaction needs at least one search parameter")
        }
        return parsed.query
    }

    /// A search: unknown parameters are ignored with a warning unless `strict` (`Prefer: handling=strict`).
    public func parseSearch(type: String, query: String, strict: Bool) throws(FHIRError) -> ParsedSearch {
        var result = ParsedSearch(query: SearchQuery(type: type, clauses: []), page: PageRequest(count: Self.defaultCount))
        var issues: [Issue] = []
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let fullName = percentDecode(String(parts[0]))
            let rawValue = parts.count > 1 ? percentDecode(String(parts[1])) : ""
            do {
                try Self.checkValue(fullName, rawValue)
                try apply(fullName, rawValue, type: type, strict: strict, to: &result)
            } catch {
                issues.append(contentsOf: error.issues)
            }
        }
        if !issues.isEmpty { throw FHIRError(.invalid, issues) }
        try Self.checkSize(result.query)
        if result.query.sort.count > Self.maxSortKeys {
            throw FHIRError(.invalid, code: "too-costly", "_sort has \(result.query.sort.count) keys; at most \(Self.maxSortKeys) are accepted", at: "_sort")
        }
        if result.includes.count + result.revincludes.count > Self.maxIncludes {
            throw FHIRError(.invalid, code: "too-costly", "The search has \(result.includes.count + result.revincludes.count) _include and _revinclude "
                            + "parameters; at most \(Self.maxIncludes) are accepted", at: "_include")
        }
        result.query = storedParameters(result.query)
        return result
    }

    /// The query with each clause and sort key naming the parameters whose rows answer it
    /// (a folded parameter reads its parts' rows), chained and reverse-chained queries included.
    func storedParameters(_ query: SearchQuery) -> SearchQuery {
        var q = query
        q.clauses = q.clauses.map { c in
            .init(parameter: c.parameter, parameterType: c.parameterType, values: c.values.map { v in
                switch v {
                case .chain(let inner): return .chain(storedParameters(inner))
                case .has(let inner, let parameter): return .has(storedParameters(inner), parameter: parameter)
                default: return v
                }
            }, negated: c.negated, stored: registry.stored(c.parameter, for: q.type))
        }
        for i in q.sort.indices { q.sort[i].stored = registry.stored(q.sort[i].parameter, for: q.type) }
        return q
    }

    /// `_summary` and `_elements` of a read (`GET [type]/[id]`); other parameters are ignored.
    public func parseSubsetting(query: String) throws(FHIRError) -> (summary: SummaryMode, elements: [String]?) {
        var mode = SummaryMode.full
        var elements: [String]?
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]))
            let rawValue = parts.count > 1 ? percentDecode(String(parts[1])) : ""
            if name == "_summary" {
                guard let m = SummaryMode(rawValue: rawValue) else {
                    throw FHIRError(.invalid, code: "invalid", "_summary must be true, text, data or false on a read", at: name)
                }
                mode = m
            } else if name == "_elements" {
                elements = Self.elementNames(rawValue)
            }
        }
        return (mode, elements)
    }

    static func elementNames(_ raw: String) -> [String] {
        raw.split(separator: ",").map { String($0.trimmingSpaces()) }.filter { !$0.isEmpty }
    }

    private func apply(_ fullName: String, _ rawValue: String, type: String, strict: Bool, to result: inout ParsedSearch) throws(FHIRError) {
        let nameParts = fullName.split(separator: ":", maxSplits: 1).map(String.init)
        let name = nameParts.first ?? ""
        let modifier = nameParts.count > 1 ? nameParts[1] : nil
        func bad(_ message: String) -> FHIRError { FHIRError(.invalid, code: "invalid", message, at: fullName) }
        switch name {
        case "_format", "_pretty":
            return
        case "_mdm" where !strict:
            guard rawValue == "true" || rawValue == "false" else { throw bad("_mdm must be true or false") }
            result.acrossFacilities = rawValue == "true"
            return
        case "_count":
            guard let n = Int(rawValue), n >= 0 else { throw bad("_count must be a non-negative integer") }
            result.page.count = min(n, Self.maxCount)
            return
        case "_offset":
            guard let n = Int(rawValue), n >= 0, n <= Self.maxOffset else { throw bad("_offset must be an integer from 0 to \(Self.maxOffset)") }
            result.page.offset = n
            return
        case "_after":
            guard let n = Int(rawValue) else { throw bad("_after must be an integer") }
            result.page.after = n
            return
        case "_snapshot":
            guard let n = Int(rawValue) else { throw bad("_snapshot must be an integer") }
            result.page.snapshot = n
            return
        case "_total":
            switch rawValue {
            case "none": result.totalNone = true
            case "estimate", "accurate": result.page.withTotal = true
            default: throw bad("_total must be none, estimate or accurate")
            }
            return
        case "_summary":
            switch rawValue {
            case "count": result.summaryCount = true; result.page.withTotal = true
            default:
                guard let mode = SummaryMode(rawValue: rawValue) else {
                    throw bad("_summary must be true, text, data, count or false")
                }
                result.summary = mode
            }
            return
        case "_elements":
            result.elements = Self.elementNames(rawValue)
            return
        case "_sort":
            for key in rawValue.split(separator: ",") {
                let descending = key.hasPrefix("-")
                let paramName = String(descending ? key.dropFirst() : key[...])
                let paramType: String
                if paramName == "_id" || paramName == "_lastUpdated" {
                    paramType = "special"
                } else if let p = registry.parameter(paramName, for: type) {
                    paramType = p.type.rawValue
                } else {
                    throw FHIRError(.invalid, code: "not-supported", "Cannot sort by unknown parameter '\(paramName)' of \(type)", at: "_sort")
                }
                result.query.sort.append(.init(parameter: paramName, parameterType: paramType, descending: descending))
            }
            return
        case "_include", "_revinclude":
            let iterate = modifier == "iterate" || modifier == "recurse"
            if let modifier, !iterate { throw bad("Unknown modifier ':\(modifier)' on \(name)") }
            let spec: IncludeSpec
            if rawValue == "*" {
                spec = IncludeSpec(sourceType: type, parameter: nil, targetType: nil, iterate: iterate)
            } else {
                let p = rawValue.split(separator: ":").map(String.init)
                guard p.count >= 2, FHIRSchema.r4.isResourceType(p[0]) else { throw bad("\(name) takes Type:parameter[:targetType] or *") }
                if p[1] != "*" {
                    guard let def = registry.parameter(p[1], for: p[0]), def.type == .reference else {
                        throw FHIRError(.invalid, code: "not-supported", "'\(p[1])' is not a reference parameter of \(p[0])", at: name)
                    }
                }
                spec = IncludeSpec(sourceType: p[0], parameter: p[1] == "*" ? nil : p[1], targetType: p.count > 2 ? p[2] : nil, iterate: iterate)
            }
            if name == "_include" { result.includes.append(spec) } else { result.revincludes.append(spec) }
            return
        case "_has":
            // _has:Type:param:rest=value (rest may itself be a _has).
            guard let modifier else { throw bad("_has takes _has:Type:referenceParameter:searchParameter") }
            let p = modifier.split(separator: ":", maxSplits: 2).map(String.init)
            guard p.count == 3, FHIRSchema.r4.isResourceType(p[0]) else { throw bad("_has takes _has:Type:referenceParameter:searchParameter") }
            guard let reference = registry.parameter(p[1], for: p[0]), reference.type == .reference else {
                throw FHIRError(.invalid, code: "not-supported", "'\(p[1])' is not a reference parameter of \(p[0])", at: fullName)
            }
            var inner = ParsedSearch(query: SearchQuery(type: p[0], clauses: []), page: PageRequest())
            try apply(p[2], rawValue, type: p[0], strict: true, to: &inner)
            result.query.clauses.append(.init(parameter: "_has", parameterType: "special", values: [.has(inner.query, parameter: p[1])]))
            return
        case "_compartment":
            // Set by the compartment-search route (Patient/{id}/Type?...); a client sending it only narrows its search.
            guard case .relative(let t, let id, nil)? = ReferenceSyntax.parse(rawValue) else { throw bad("Invalid compartment") }
            result.query.clauses.append(.init(parameter: "_compartment", parameterType: "special", values: [.compartment(type: t, id: id)]))
            return
        case "_contained", "_containedType", "_list", "_text", "_content", "_query", "_filter":
            try unsupported("\(name) is not supported yet", strict, &result)
            return
        default:
            break
        }
        if let dot = fullName.firstIndex(of: ".") {
            try chain(String(fullName[..<dot]), rest: String(fullName[fullName.index(after: dot)...]), rawValue, type: type, to: &result)
            return
        }
        let values = splitValues(rawValue)
        guard !values.isEmpty else { throw bad("Search parameter '\(fullName)' has no value") }
        if name == "_id" {
            if modifier == "missing" { return }
            result.query.clauses.append(.init(parameter: "_id", parameterType: "token", values: values.map { .id($0) }))
            return
        }
        if name == "_lastUpdated" {
            let matches = try values.map { v throws(FHIRError) in
                let (prefix, range) = try dateValue(v, at: fullName)
                return SearchQuery.Match.lastUpdated(prefix, low: range.low, high: range.high)
            }
            result.query.clauses.append(.init(parameter: "_lastUpdated", parameterType: "special", values: matches))
            return
        }
        guard let parameter = registry.parameter(name, for: type) else {
            try unsupported("Unknown search parameter '\(name)' for \(type)", strict, &result)
            return
        }
        let typeName = parameter.type.rawValue
        if modifier == "missing" {
            guard rawValue == "true" || rawValue == "false" else { throw bad(":missing takes true or false") }
            result.query.clauses.append(.init(parameter: name, parameterType: typeName, values: [.missing(rawValue == "true")]))
            return
        }
        var negated = false
        var matches: [SearchQuery.Match] = []
        switch parameter.type {
        case .token:
            switch modifier {
            case nil: break
            case "not": negated = true
            case "text":
                result.query.clauses.append(.init(parameter: name + ":text", parameterType: "string",
                                                  values: values.map { .stringPrefix(StringNormalizer.normalize($0)) }))
                return
            case "of-type":
                var typed: [SearchQuery.Match] = []
                for v in values {
                    let p = v.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                    guard p.count == 3, !p[1].isEmpty, !p[2].isEmpty else { throw bad(":of-type takes system|code|value") }
                    typed.append(.token(system: p[0] + "|" + p[1], code: p[2]))
                    // (A resident ID number's type is NNCHN, whatever its value looks like.)
                    if let blinded = protection?.searchable(system: p[1] == "NNCHN" ? IdentifierProtection.residentIDSystem : nil, code: p[2]) {
                        typed.append(.token(system: p[0] + "|" + p[1], code: blinded))
                    }
                }
                result.query.clauses.append(.init(parameter: name + ":of-type", parameterType: "token", values: typed))
                return
            case "in", "not-in":
                guard valueSets else { throw bad(":\(modifier!) needs the terminology service, which this request does not reach") }
                guard values.count == 1, let url = values.first, !url.isEmpty else { throw bad(":\(modifier!) takes one value set URL") }
                result.query.clauses.append(.init(parameter: name, parameterType: "token", values: [.inValueSet(url)], negated: modifier == "not-in"))
                return
            case "below", "above":
                // Subsumption in a stored code system's hierarchy (ADR 022): system|code.
                var typed: [SearchQuery.Match] = []
                for v in values {
                    let p = v.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                    guard p.count == 2, !p[0].isEmpty, !p[1].isEmpty else {
                        throw bad(":\(modifier!) takes system|code (the code system whose hierarchy is meant)")
                    }
                    typed.append(modifier == "below" ? .tokenBelow(system: p[0], code: p[1]) : .tokenAbove(system: p[0], code: p[1]))
                }
                result.query.clauses.append(.init(parameter: name, parameterType: "token", values: typed))
                return
            default: throw FHIRError(.invalid, code: "not-supported", "Modifier ':\(modifier!)' is not supported on token parameters yet", at: fullName)
            }
            matches = values.flatMap(tokenMatches)
        case .string:
            for v in values {
                switch modifier {
                case nil: matches.append(.stringPrefix(StringNormalizer.normalize(v)))
                case "exact": matches.append(.stringExact(v))
                case "contains": matches.append(.stringContains(StringNormalizer.normalize(v)))
                default: throw FHIRError(.invalid, code: "not-supported", "Modifier ':\(modifier!)' is not supported on string parameters", at: fullName)
                }
            }
        case .reference:
            var typeModifier: String?
            if modifier == "identifier" {
                result.query.clauses.append(.init(parameter: name + ":identifier", parameterType: "token", values: values.flatMap(tokenMatches)))
                return
            }
            if let modifier {
                guard FHIRSchema.r4.isResourceType(modifier) else {
                    throw FHIRError(.invalid, code: "not-supported", "Modifier ':\(modifier)' is not supported on reference parameters yet", at: fullName)
                }
                typeModifier = modifier
            }
            for v in values {
                switch ReferenceSyntax.parse(v) {
                case .relative(let t, let id, _):
                    matches.append(.reference(type: t, id: id))
                case .absolute(let url):
                    matches.append(.referenceURL(url))
                    if let (t, id) = ReferenceSyntax.typeAndID(fromURL: url) { matches.append(.reference(type: t, id: id)) }
                default:
                    guard FHIRPrimitive.isValidID(v) else { throw bad("'\(v)' is not a reference (Type/id, id or URL)") }
                    matches.append(.reference(type: typeModifier, id: v))
                }
            }
        case .uri:
            for v in values {
                switch modifier {
                case nil: matches.append(.uri(v))
                case "below": matches.append(.uriBelow(v))
                default: throw FHIRError(.invalid, code: "not-supported", "Modifier ':\(modifier!)' is not supported on uri parameters", at: fullName)
                }
            }
        case .date:
            if let modifier { throw bad("Modifier ':\(modifier)' is not allowed on date parameters") }
            for v in values {
                let (prefix, range) = try dateValue(v, at: fullName)
                matches.append(.date(prefix, low: range.low, high: range.high))
            }
        case .number, .quantity:
            if let modifier { throw bad("Modifier ':\(modifier)' is not allowed on \(typeName) parameters") }
            for v in values { matches.append(try quantityValue(v, at: fullName, isQuantity: parameter.type == .quantity)) }
        default:
            try unsupported("Parameter '\(name)' of type \(typeName) is not supported yet", strict, &result)
            return
        }
        result.query.clauses.append(.init(parameter: name, parameterType: typeName, values: matches, negated: negated))
    }

    /// `subject:Patient.name=x` / `patient.name=x` / two hops: `subject:Patient.organization.name=x`.
    private func chain(_ head: String, rest: String, _ rawValue: String, type: String, to result: inout ParsedSearch) throws(FHIRError) {
        let parts = head.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let chainedName = String(rest.prefix { $0 != "." && $0 != ":" })
        guard !parts[0].isEmpty, !chainedName.isEmpty else {
            throw FHIRError(.invalid, code: "invalid", "A chain names a reference parameter, then a parameter of its target: 'subject.name'", at: head + "." + rest)
        }
        guard let reference = registry.parameter(parts[0], for: type), reference.type == .reference else {
            throw FHIRError(.invalid, code: "not-supported", "'\(parts[0])' is not a reference parameter of \(type), so it cannot be chained", at: head)
        }
        var targets: [String]
        if parts.count > 1 {
            guard FHIRSchema.r4.isResourceType(parts[1]) else { throw FHIRError(.invalid, code: "invalid", "Unknown resource type '\(parts[1])'", at: head) }
            targets = [parts[1]]
        } else if let restricted = reference.paths.compactMap(\.targetType).first, reference.paths.allSatisfy({ $0.targetType != nil }) {
            targets = [restricted]
        } else {
            // A hop through a reference that may point at many types, then another hop, would
            // multiply the alternatives at every dot: the middle hops name their type.
            guard !rest.contains(".") else {
                throw FHIRError(.invalid, code: "too-costly", "'\(parts[0])' can reference several types: name one before chaining further ('\(parts[0]):Patient.…')", at: head)
            }
            // Every type that has the chained parameter; the reference's own targets narrow it at match time.
            targets = FHIRSchema.r4.resourceTypeNames.filter { chainedName.hasPrefix("_") || registry.parameter(chainedName, for: $0) != nil }
        }
        var values: [SearchQuery.Match] = []
        for target in targets {
            var inner = ParsedSearch(query: SearchQuery(type: target, clauses: []), page: PageRequest())
            try apply(rest, rawValue, type: target, strict: true, to: &inner)
            values.append(.chain(inner.query))
        }
        guard !values.isEmpty else {
            throw FHIRError(.invalid, code: "not-supported", "No resource type that '\(parts[0])' can reference has a parameter '\(chainedName)'", at: head)
        }
        result.query.clauses.append(.init(parameter: parts[0], parameterType: "reference", values: values))
    }

    private func unsupported(_ message: String, _ strict: Bool, _ result: inout ParsedSearch) throws(FHIRError) {
        if strict { throw FHIRError(.invalid, code: "not-supported", message) }
        result.warnings.append(Issue(.warning, code: "not-supported", message + "; ignored"))
    }

    /// A token value, and its blind index form when it may be a protected number.
    public func tokenMatches(_ v: String) -> [SearchQuery.Match] {
        let match = tokenMatch(v)
        guard case .token(let system, let code?) = match, let blinded = protection?.searchable(system: system, code: code) else { return [match] }
        return [match, .token(system: system, code: blinded)]
    }

    /// A token value: `code`, `system|code`, `|code` or `system|`.
    func tokenMatch(_ v: String) -> SearchQuery.Match {
        guard let bar = v.firstIndex(of: "|") else { return .token(system: nil, code: v) }
        let system = String(v[..<bar]), code = String(v[v.index(after: bar)...])
        return .token(system: system, code: code.isEmpty ? nil : code)
    }

    /// Splits a leading comparison prefix (`ge2024`) off a value.
    func prefixed(_ v: String) -> (SearchQuery.Prefix, String) {
        if v.count > 2, let p = SearchQuery.Prefix(rawValue: String(v.prefix(2))),
           let third = v.dropFirst(2).first, third.isNumber || third == "-" {
            return (p, String(v.dropFirst(2)))
        }
        return (.eq, v)
    }

    func dateValue(_ v: String, at: String) throws(FHIRError) -> (SearchQuery.Prefix, (low: Int64, high: Int64)) {
        let (prefix, text) = prefixed(v)
        guard let t = FHIRDateTime.parse(text, kind: .dateTime) ?? FHIRDateTime.parse(text, kind: .instant) else {
            throw FHIRError(.invalid, code: "value", "'\(v)' is not a valid date search value ([prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]])", at: at)
        }
        if prefix == .ap {
            // Approximately: widen by 10 % of the distance from now, at least a day.
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            let gap = max(abs(now - t.low) / 10, 86_400_000_000)
            return (prefix, (t.low - gap, t.high + gap))
        }
        return (prefix, (t.low, t.high))
    }

    func quantityValue(_ v: String, at: String, isQuantity: Bool) throws(FHIRError) -> SearchQuery.Match {
        let (prefix, text) = prefixed(v)
        let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard let number = Double(parts[0]), parts[0].allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" || $0 == "e" || $0 == "E" || $0 == "+" }) else {
            throw FHIRError(.invalid, code: "value", "'\(v)' is not a valid number search value", at: at)
        }
        if !isQuantity && parts.count > 1 { throw FHIRError(.invalid, code: "value", "A number takes no unit: '\(v)'", at: at) }
        // The implicit precision of the value: 5.4 means [5.35, 5.45).
        var half = 0.5
        if let dot = parts[0].firstIndex(of: "."), !parts[0].contains("e"), !parts[0].contains("E") {
            half = 0.5 * pow(10, -Double(parts[0].distance(from: dot, to: parts[0].endIndex) - 1))
        }
        let system = parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil
        let code = parts.count > 2 && !parts[2].isEmpty ? parts[2] : nil
        return .quantity(prefix, value: number, low: number - half, high: number + half, system: system, code: code)
    }
}
