import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store
import Synchronization

/// A ConceptMap's mappings, parsed once: by source system and code, the targets.
public struct ParsedConceptMap: Sendable {
    public struct Target: Sendable, Equatable {
        public let system: String
        public let code: String
        public let display: String?
        public let equivalence: String
        /// The map's canonical URL.
        public let map: String
    }

    public let url: String
    /// source system → source code → targets
    public private(set) var forward: [String: [String: [Target]]] = [:]
    /// target system → target code → the sources (as targets of the reverse direction)
    public private(set) var reverse: [String: [String: [Target]]] = [:]
    /// Source systems whose unmapped codes have a fixed target (`group.unmapped` mode fixed).
    public private(set) var fixed: [String: Target] = [:]
    /// Source systems whose unmapped codes are the same code in the target system (mode provided).
    public private(set) var provided: [String: String] = [:]
    /// Source systems whose unmapped codes are translated by another map (mode other-map: its URL).
    public private(set) var otherMap: [String: String] = [:]

    public init(_ map: JSONObject) {
        url = map["url"]?.stringValue ?? "ConceptMap/" + (map["id"]?.stringValue ?? "")
        for group in map["group"]?.arrayValue ?? [] {
            guard let source = group["source"]?.stringValue else { continue }
            let targetSystem = group["target"]?.stringValue
            for element in group["element"]?.arrayValue ?? [] {
                guard let code = element["code"]?.stringValue else { continue }
                for target in element["target"]?.arrayValue ?? [] {
                    let equivalence = target["equivalence"]?.stringValue ?? "equivalent"
                    guard let targetSystem else { continue }
                    if let targetCode = target["code"]?.stringValue {
                        forward[source, default: [:]][code, default: []].append(
                            Target(system: targetSystem, code: targetCode, display: target["display"]?.stringValue, equivalence: equivalence, map: url))
                        reverse[targetSystem, default: [:]][targetCode, default: []].append(
                            Target(system: source, code: code, display: element["display"]?.stringValue,
                                   equivalence: Self.reversed(equivalence), map: url))
                    } else {
                        // unmatched / disjoint: said, with no code.
                        forward[source, default: [:]][code, default: []].append(
                            Target(system: targetSystem, code: "", display: nil, equivalence: equivalence, map: url))
                    }
                }
            }
            if let unmapped = group["unmapped"] {
                switch unmapped["mode"]?.stringValue {
                case "fixed":
                    if let targetSystem, let code = unmapped["code"]?.stringValue {
                        fixed[source] = Target(system: targetSystem, code: code, display: unmapped["display"]?.stringValue, equivalence: "inexact", map: url)
                    }
                case "provided":
                    if let targetSystem { provided[source] = targetSystem }
                case "other-map":
                    if let other = unmapped["url"]?.stringValue { otherMap[source] = other }
                default:
                    break
                }
            }
        }
    }

    /// The equivalence seen from the target's side.
    static func reversed(_ equivalence: String) -> String {
        switch equivalence {
        case "wider": "narrower"
        case "narrower": "wider"
        case "subsumes": "specializes"
        case "specializes": "subsumes"
        default: equivalence
        }
    }

    /// The targets of `system#code`; for a code the map does not have, its group's `unmapped`
    /// rule: the fixed target, or the same code in the target system (`provided`). (`other-map`
    /// needs the other map: `otherMap`.)
    public func translate(system: String, code: String, reverse: Bool = false) -> [Target] {
        if reverse { return self.reverse[system]?[code] ?? [] }
        if let targets = forward[system]?[code] { return targets }
        if let target = fixed[system] { return [target] }
        if let targetSystem = provided[system] { return [Target(system: targetSystem, code: code, display: nil, equivalence: "equal", map: url)] }
        return []
    }

    /// Whether ingest sees `system#code` as mapped by this map (the unmapped-code report): an
    /// element of a group, or a fixed target. `provided` and `other-map` rules answer `$translate`
    /// only; the facility-map enrichment adds no Coding for them, so their codes stay reported.
    public func maps(system: String, code: String) -> Bool {
        forward[system]?[code] != nil || fixed[system] != nil
    }

    /// The source systems whose codes `maps(system:code:)` may answer for.
    public var sourceSystems: Set<String> { Set(forward.keys).union(fixed.keys) }
}

/// Each facility's maps from its local codes to the regional standard (四统一, ADR 022): the
/// ConceptMaps a facility wrote (their `meta.source` is the facility's). On ingest, a Coding with a
/// mapped local code gets the standard Coding added beside it — the original kept as it is, the
/// added one marked with the map it came from — when the mapping is `equivalent`, `equal`,
/// `wider` or `subsumes` (the record is then truly of the standard code) and no Coding of that
/// system and code is there yet. The maps are read again at most every `ttl` (and at once on this
/// node after a ConceptMap write of the facility).
public final class FacilityCodeMaps: WriteEnricher, Sendable {
    public static let mappedFrom = "https://huitong.health/fhir/StructureDefinition/coding-mapped-from"
    static let asserting: Set<String> = ["equivalent", "equal", "wider", "subsumes"]
    let store: any ResourceStore
    let ttl: Duration
    private let cache = Mutex<[String: Entry]>([:])

    /// A facility's maps as loaded, and the Codings they add, built once per load: source system →
    /// source code → the standard Codings (each with its `coding-mapped-from` extension), in the
    /// order of the maps and their targets. Adding one is then a lookup and a copy.
    struct Entry: Sendable {
        struct Addition: Sendable {
            let system: String
            let code: String
            let coding: JSON
        }

        let loaded: ContinuousClock.Instant
        let maps: [ParsedConceptMap]
        let additions: [String: [String: [Addition]]]

        init(loaded: ContinuousClock.Instant, maps: [ParsedConceptMap]) {
            self.loaded = loaded
            self.maps = maps
            var additions: [String: [String: [Addition]]] = [:]
            for map in maps {
                // Only `forward`: a fixed target of unmapped codes is `inexact`, never asserted.
                for (system, codes) in map.forward {
                    for (code, targets) in codes {
                        for target in targets
                        where FacilityCodeMaps.asserting.contains(target.equivalence) && !target.code.isEmpty && !target.system.isEmpty {
                            var coding = JSONObject([("extension", .array([.object(JSONObject([("url", .string(FacilityCodeMaps.mappedFrom)),
                                                                                                ("valueCanonical", .string(target.map))]))])),
                                                     ("system", .string(target.system)), ("code", .string(target.code))])
                            if let display = target.display { coding["display"] = .string(display) }
                            additions[system, default: [:]][code, default: []].append(
                                Addition(system: target.system, code: target.code, coding: .object(coding)))
                        }
                    }
                }
            }
            self.additions = additions
        }
    }

    public init(store: any ResourceStore, ttl: Duration = .seconds(2)) {
        self.store = store
        self.ttl = ttl
    }

    /// The facility's maps, from the cache while fresh.
    public func maps(for facility: String) async throws -> [ParsedConceptMap] {
        try await entry(for: facility).maps
    }

    /// The facility's maps and what they add, from the cache while fresh.
    func entry(for facility: String) async throws -> Entry {
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0[facility] }), now - hit.loaded < ttl { return hit }
        let query = SearchQuery(type: "ConceptMap", clauses: [.init(parameter: "_source", parameterType: "uri",
                                                                   values: [.uri(FHIRService.facilitySource(facility))])])
        let keys = try await store.search(query, limit: 1000)
        let maps = try await store.read(keys: keys).values.sorted { $0.key.id < $1.key.id }.compactMap { record -> ParsedConceptMap? in
            guard let content = record.content, let o = (try? JSONParser.parse(Array(content.readableBytesView)))?.objectValue,
                  o["status"]?.stringValue != "retired" else { return nil }
            return ParsedConceptMap(o)
        }
        let entry = Entry(loaded: now, maps: maps)
        cache.withLock { $0[facility] = entry }
        return entry
    }

    public func invalidate(_ facility: String) {
        _ = cache.withLock { $0.removeValue(forKey: facility) }
    }

    /// The writing facility's maps.
    public func reads(preparing type: String) -> Set<String>? {
        type == "ConceptMap" ? [] : ["ConceptMap"]
    }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        if let facility, type == "ConceptMap" { invalidate(facility) }
        return resource
    }

    /// The standard codings are added after validation (`WriteEnricher.finish`): they come from
    /// the facility's stored, validated ConceptMaps.
    public func finish(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject? {
        guard let facility, type != "ConceptMap" else { return nil }
        let additions = try await entry(for: facility).additions
        guard !additions.isEmpty else { return nil }
        return Self.walk(resource) { codings in
            var list: [JSON]?
            for coding in codings {
                guard let system = coding["system"]?.stringValue, let bySystem = additions[system],
                      let code = coding["code"]?.stringValue, let added = bySystem[code] else { continue }
                for addition in added
                where !(list ?? codings).contains(where: { $0["system"]?.stringValue == addition.system && $0["code"]?.stringValue == addition.code }) {
                    if list == nil { list = codings }
                    list!.append(addition.coding)
                }
            }
            return list
        }
    }

    /// `object` with the `coding` arrays that `transform` changes (it answers nil for no change)
    /// replaced; nil when nothing changed (no subtree is copied then).
    static func walk(_ object: JSONObject, _ transform: ([JSON]) -> [JSON]?) -> JSONObject? {
        var out: JSONObject?
        for (i, member) in object.members.enumerated() {
            let replacement: JSON?
            switch member.value {
            case .array(let items) where member.key == "coding":
                replacement = transform(items).map { .array($0) }
            case .array(let items):
                var changed: [JSON]?
                for (j, item) in items.enumerated() {
                    guard case .object(let o) = item, let new = walk(o, transform) else { continue }
                    if changed == nil { changed = items }
                    changed![j] = .object(new)
                }
                replacement = changed.map { .array($0) }
            case .object(let o):
                replacement = walk(o, transform).map { .object($0) }
            default:
                replacement = nil
            }
            if let replacement {
                if out == nil { out = object }
                out!.replaceValue(at: i, with: replacement)
            }
        }
        return out
    }
}
