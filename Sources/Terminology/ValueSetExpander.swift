import Access
import FHIRModel
import Crypto
import Foundation
import Identity
import NIOCore
import Platform
import Store
import Synchronization

/// ValueSet expansion (ADR 022): `compose` include/exclude by system, concept list, filters
/// (`is-a`, `descendent-of`, `is-not-a`, `generalizes`, `regex`, `=`, `in`, `not-in`, `exists`)
/// and other value sets, from the concept rows and closure of the stored CodeSystems. Full
/// expansions are cached, each checked on use against the hashes of its sources (the value sets'
/// content, the code systems' concept hashes), so a changed source is never served stale.
public struct ValueSetExpander: Sendable {
    public let store: any ResourceStore
    let cache: ExpansionCache
    /// Expansions larger than this are refused (a search should use `:below` instead).
    public static let maxCodes = 100_000
    static let maxDepth = 8

    public init(store: any ResourceStore, cache: ExpansionCache = .shared) {
        self.store = store
        self.cache = cache
    }

    /// One code of an expansion.
    public struct Code: Sendable, Hashable {
        public let system: String
        public let version: String?
        public let code: String
        public let display: String?
        public let inactive: Bool
        /// JSON of the concept's designations ("" when none).
        let designations: String

        public static func == (a: Code, b: Code) -> Bool { a.system == b.system && a.code == b.code }
        public func hash(into h: inout Hasher) { h.combine(system); h.combine(code) }

        func designationList() -> [JSON] {
            guard !designations.isEmpty else { return [] }
            return (try? JSONParser.parse(Array(designations.utf8)))?.arrayValue ?? []
        }
    }

    /// A stored ValueSet by canonical URL (`url` or `url|version`; without a version the newest).
    public func valueSet(_ canonical: String) async throws -> JSONObject {
        let parts = canonical.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let url = parts.first, !url.isEmpty else {
            throw FHIRError(.invalid, code: "value", "A value set is named by its canonical URL, not '\(canonical)'", at: "url")
        }
        var query = SearchQuery(type: "ValueSet", clauses: [.init(parameter: "url", parameterType: "uri", values: [.uri(url)])])
        if parts.count == 2 { query.clauses.append(.init(parameter: "version", parameterType: "token", values: [.token(system: nil, code: parts[1])])) }
        let keys = try await store.search(query, limit: 50)
        let records = try await store.read(keys: keys).values.compactMap { r -> JSONObject? in
            guard let content = r.content else { return nil }
            return (try? JSONParser.parse(Array(content.readableBytesView)))?.objectValue
        }
        guard let newest = records.max(by: { CanonicalVersion.precedes($0["version"]?.stringValue ?? "", $1["version"]?.stringValue ?? "") }) else {
            throw FHIRError(.notFound, code: "not-found", "Unknown value set '\(canonical)'", at: "url")
        }
        return newest
    }

    /// Every code of the value set, in include order (then code order), without duplicates.
    public func expand(_ valueSet: JSONObject) async throws -> [Code] {
        try await expand(valueSet, depth: 0).codes
    }

    func expand(_ valueSet: JSONObject, depth: Int) async throws -> (codes: [Code], sources: [String: String]) {
        guard depth < Self.maxDepth else {
            throw FHIRError(.invalid, code: "processing", "Value sets include each other more than \(Self.maxDepth) deep (a cycle?)")
        }
        let key = Self.hash(.object(valueSet))
        if let cached = cache.get(key), try await stillValid(cached.sources) { return (cached.codes, cached.sources) }
        var sources: [String: String] = ["vs:" + key: key]
        var result: [Code] = []
        var seen: Set<Code> = []
        if let compose = valueSet["compose"]?.objectValue {
            for include in compose["include"]?.arrayValue ?? [] {
                guard let include = include.objectValue else { continue }
                for code in try await select(include, depth: depth, sources: &sources) where seen.insert(code).inserted { result.append(code) }
            }
            var excluded: Set<Code> = []
            for exclude in compose["exclude"]?.arrayValue ?? [] {
                guard let exclude = exclude.objectValue else { continue }
                excluded.formUnion(try await select(exclude, depth: depth, sources: &sources))
            }
            if !excluded.isEmpty { result.removeAll { excluded.contains($0) } }
            // `compose.inactive` false: inactive codes are not in the value set at all (R4 ValueSet.compose.inactive).
            if compose["inactive"]?.boolValue == false { result.removeAll(where: \.inactive) }
        } else if let contains = valueSet["expansion"]?["contains"]?.arrayValue {
            // A value set given by its expansion only.
            func walk(_ list: [JSON]) {
                for c in list {
                    if let system = c["system"]?.stringValue, let code = c["code"]?.stringValue {
                        let item = Code(system: system, version: c["version"]?.stringValue, code: code, display: c["display"]?.stringValue,
                                        inactive: c["inactive"]?.boolValue ?? false, designations: "")
                        if seen.insert(item).inserted { result.append(item) }
                    }
                    walk(c["contains"]?.arrayValue ?? [])
                }
            }
            walk(contains)
        } else {
            throw FHIRError(.invalid, code: "invalid", "The value set has neither compose nor expansion", at: "ValueSet.compose")
        }
        guard result.count <= Self.maxCodes else {
            throw FHIRError(.tooCostly, code: "too-costly", "The value set has more than \(Self.maxCodes) codes")
        }
        cache.put(key, codes: result, sources: sources)
        return (result, sources)
    }

    /// Whether every source of a cached expansion is as it was.
    func stillValid(_ sources: [String: String]) async throws -> Bool {
        for (source, hash) in sources where source.hasPrefix("cs:") {
            let system = String(source.dropFirst(3))
            let header = try await store.concepts(system: system, version: nil, .codes([""]), after: nil, limit: 100)
            if Self.systemHash(header) != hash { return false }
        }
        for (source, hash) in sources where source.hasPrefix("vsurl:") {
            guard let current = try? await valueSet(String(source.dropFirst(6))), Self.hash(.object(current)) == hash else { return false }
        }
        return true
    }

    static func systemHash(_ headers: [ConceptEntry]) -> String {
        headers.map { h in (try? JSONParser.parse(Array(h.detail.utf8)))?["hash"]?.stringValue ?? "" }.joined(separator: ",")
    }

    /// The codes one include (or exclude) selects.
    func select(_ part: JSONObject, depth: Int, sources: inout [String: String]) async throws -> [Code] {
        var selected: [Code]?
        if let system = part["system"]?.stringValue {
            let version = part["version"]?.stringValue
            let headers = try await store.concepts(system: system, version: version, .codes([""]), after: nil, limit: 100)
            sources["cs:" + system] = Self.systemHash(headers)
            let stored = !headers.isEmpty
            if let concepts = part["concept"]?.arrayValue {
                let codes = concepts.compactMap { $0["code"]?.stringValue }
                let found = Dictionary(try await rows(system, version, .codes(codes)).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
                selected = concepts.compactMap { c -> Code? in
                    guard let code = c["code"]?.stringValue else { return nil }
                    if let row = found[code] {
                        return c["display"]?.stringValue.map { Code(system: row.system, version: row.version, code: code, display: $0,
                                                                     inactive: row.inactive, designations: row.designations) } ?? row
                    }
                    // An enumerated code of a system not stored here stands as written.
                    return stored ? nil : Code(system: system, version: version, code: code, display: c["display"]?.stringValue,
                                               inactive: false, designations: "")
                }
            } else {
                guard stored else {
                    throw FHIRError(.notFound, code: "not-found", "Code system '\(system)' is not stored: its concepts cannot be listed",
                                    at: "ValueSet.compose.include.system")
                }
                var current: [Code]?
                for filter in part["filter"]?.arrayValue ?? [] {
                    guard let filter = filter.objectValue else { continue }
                    let codes = try await apply(filter, system: system, version: version)
                    if let previous = current {
                        let keep = Set(codes)
                        current = previous.filter { keep.contains($0) }
                    } else {
                        current = codes
                    }
                }
                if let current { selected = current } else { selected = try await rows(system, version, .all) }
            }
        }
        for canonical in part["valueSet"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            let nested = try await valueSet(canonical)
            sources["vsurl:" + canonical] = Self.hash(.object(nested))
            let (codes, nestedSources) = try await expand(nested, depth: depth + 1)
            sources.merge(nestedSources) { a, _ in a }
            if let previous = selected {
                let keep = Set(codes)
                selected = previous.filter { keep.contains($0) }
            } else {
                selected = codes
            }
        }
        return selected ?? []
    }

    /// Every stored concept of `query`, paged through; of several stored versions of a code, the
    /// newest (`CanonicalVersion`) when no version is asked for.
    func entries(_ system: String, _ version: String?, _ query: ConceptQuery) async throws -> [ConceptEntry] {
        var found: [ConceptEntry] = []
        var after: String?
        while true {
            var page = try await store.concepts(system: system, version: version, query, after: after, limit: Self.pageSize)
            let full = page.count == Self.pageSize
            // The next page starts after a code: a code whose versions straddle the page end is read again whole.
            if full, let last = page.last?.code, page.first?.code != last { page.removeAll { $0.code == last } }
            for entry in page where !entry.code.isEmpty {
                if let previous = found.last, previous.code == entry.code {
                    if CanonicalVersion.precedes(previous.version, entry.version) { found[found.count - 1] = entry }
                } else {
                    found.append(entry)
                }
            }
            guard full, let last = page.last?.code else { break }
            guard found.count <= Self.maxCodes else {
                throw FHIRError(.tooCostly, code: "too-costly", "The value set has more than \(Self.maxCodes) codes")
            }
            after = last
        }
        return found
    }

    static let pageSize = 5000

    func rows(_ system: String, _ version: String?, _ query: ConceptQuery) async throws -> [Code] {
        try await entries(system, version, query).map { entry in
            let detail = (try? JSONParser.parse(Array(entry.detail.utf8)))?.objectValue ?? JSONObject()
            let designations = detail["designation"].map { JSONWriter.string($0) } ?? ""
            return Code(system: entry.system, version: entry.version.isEmpty ? nil : entry.version, code: entry.code,
                        display: entry.display, inactive: detail["inactive"]?.boolValue ?? false, designations: designations)
        }
    }

    /// The codes a compose filter selects.
    func apply(_ filter: JSONObject, system: String, version: String?) async throws -> [Code] {
        guard let property = filter["property"]?.stringValue, let op = filter["op"]?.stringValue, let value = filter["value"]?.stringValue else {
            throw FHIRError(.invalid, code: "required", "A filter has property, op and value", at: "ValueSet.compose.include.filter")
        }
        switch op {
        case "is-a":
            return try await rows(system, version, .below(value))
        case "descendent-of":
            return try await rows(system, version, .below(value)).filter { $0.code != value }
        case "is-not-a":
            let below = Set(try await rows(system, version, .below(value)).map(\.code))
            return try await rows(system, version, .all).filter { !below.contains($0.code) }
        case "generalizes":
            return try await rows(system, version, .above(value))
        case "regex":
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: "^(?:" + value + ")$") } catch {
                throw FHIRError(.invalid, code: "value", "Invalid regex '\(value)'", at: "ValueSet.compose.include.filter.value")
            }
            var details: [String: [String]] = [:]
            if !["concept", "code", "display"].contains(property) {
                for entry in try await detailed(system, version) { details[entry.code] = entry.values[property] ?? [] }
            }
            return try await rows(system, version, .all).filter { code in
                (propertyValues(code, property, system: system) ?? details[code.code] ?? []).contains { text in
                    regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                }
            }
        case "=", "in", "not-in", "exists":
            let wanted = Set(op == "=" ? [value] : value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            if ["concept", "code"].contains(property), op != "not-in", op != "exists" {
                return try await rows(system, version, .codes(Array(wanted)))
            }
            let all = try await rows(system, version, .all)
            var details: [String: [String]] = [:]
            for entry in try await detailed(system, version) { details[entry.code] = entry.values[property] ?? [] }
            return all.filter { code in
                let values = ["concept", "code"].contains(property) ? [code.code] : property == "display" ? [code.display ?? ""] : details[code.code] ?? []
                switch op {
                case "exists": return values.isEmpty == (value == "false")
                case "not-in": return values.allSatisfy { !wanted.contains($0) }
                default: return values.contains { wanted.contains($0) }
                }
            }
        default:
            throw FHIRError(.invalid, code: "not-supported", "Filter op '\(op)' is not supported", at: "ValueSet.compose.include.filter.op")
        }
    }

    /// The values of `code`, `concept` and `display` (nil: another property, read from the concept's detail).
    func propertyValues(_ code: Code, _ property: String, system: String) -> [String]? {
        switch property {
        case "code", "concept": return [code.code]
        case "display": return [code.display].compactMap { $0 }
        default: return nil
        }
    }

    /// Property values of every concept (for `=`, `in`, `not-in`, `exists` on a property).
    func detailed(_ system: String, _ version: String?) async throws -> [(code: String, values: [String: [String]])] {
        try await entries(system, version, .all).map { entry in
            let detail = (try? JSONParser.parse(Array(entry.detail.utf8)))?.objectValue ?? JSONObject()
            var values: [String: [String]] = [:]
            for p in detail["property"]?.arrayValue ?? [] {
                guard let code = p["code"]?.stringValue,
                      let v = p.objectValue?.first(where: { $0.key.hasPrefix("value") })?.value else { continue }
                switch v {
                case .string(let s), .number(let s): values[code, default: []].append(s)
                case .bool(let b): values[code, default: []].append(b ? "true" : "false")
                case .object(let o): if let c = o["code"]?.stringValue { values[code, default: []].append(c) }
                default: break
                }
            }
            if let parents = detail["parent"]?.arrayValue?.compactMap(\.stringValue) { values["parent", default: []] += parents }
            return (entry.code, values)
        }
    }

    /// SHA-256 of the JSON: the cache key of a value set's expansion (collision-resistant: a value
    /// set sent in a request cannot take the place of another's expansion).
    static func hash(_ json: JSON) -> String {
        SHA256.hash(data: JSONWriter.bytes(json)).map { String(format: "%02x", $0) }.joined()
    }
}

/// Full expansions by value set content, at most `capacity`, the least recently used dropped.
public final class ExpansionCache: Sendable {
    public static let shared = ExpansionCache(capacity: 64)
    struct Entry { let codes: [ValueSetExpander.Code]; let sources: [String: String]; var used: Int }
    private let state = Mutex<(entries: [String: Entry], clock: Int)>(([:], 0))
    let capacity: Int

    public init(capacity: Int) { self.capacity = capacity }

    func get(_ key: String) -> (codes: [ValueSetExpander.Code], sources: [String: String])? {
        state.withLock { s in
            guard var e = s.entries[key] else { return nil }
            s.clock += 1
            e.used = s.clock
            s.entries[key] = e
            return (e.codes, e.sources)
        }
    }

    func put(_ key: String, codes: [ValueSetExpander.Code], sources: [String: String]) {
        state.withLock { s in
            s.clock += 1
            s.entries[key] = Entry(codes: codes, sources: sources, used: s.clock)
            if s.entries.count > capacity, let oldest = s.entries.min(by: { $0.value.used < $1.value.used })?.key {
                s.entries[oldest] = nil
            }
        }
    }
}

extension ValueSetExpander: ValueSetCodes {
    /// `:in` / `:not-in`: the codes of a stored value set (its newest version without `|version`).
    public func codes(inValueSet canonical: String) async throws -> [(system: String, code: String)] {
        try await expand(try await valueSet(canonical)).map { ($0.system, $0.code) }
    }
}
