import Foundation
import Synchronization

/// Extracts search index entries from a resource, guided by the schema so that each
/// value is read as its declared type (a `code` is a token, a `HumanName` a string, ...).
public struct IndexExtractor: Sendable {
    public let schema: FHIRSchema
    public let registry: SearchParameterRegistry
    /// Each type's parameters with their paths resolved against the schema, made on first use.
    private let plans = PlanCache()

    public init(schema: FHIRSchema = .r4, registry: SearchParameterRegistry = .r4) {
        self.schema = schema
        self.registry = registry
    }

    public func entries(for resource: JSONObject, type: String) -> [IndexEntry] {
        var result: [IndexEntry] = []
        var seen = Set<IndexEntry>()
        var found: [(JSON, String)] = []
        for (parameter, paths) in plan(for: type) {
            for path in paths {
                found.removeAll(keepingCapacity: true)
                Self.collect(path.roots, in: resource, into: &found)
                for (value, valueType) in found {
                    if parameter.type == .reference, case .object(let o) = value, let identifier = o["identifier"] {
                        // `param:identifier` searches match Reference.identifier.
                        for t in tokens(identifier, "Identifier") where seen.insert(IndexEntry(parameter.name + ":identifier", t)).inserted {
                            result.append(IndexEntry(parameter.name + ":identifier", t))
                        }
                    }
                    if parameter.type == .token {
                        for e in tokenExtras(value, valueType, parameter: parameter.name) where seen.insert(e).inserted { result.append(e) }
                    }
                    for v in indexValues(value, valueType: valueType, as: parameter.type) {
                        if let target = path.targetType, case .reference(let t, _, _) = v, t != target { continue }
                        let entry = IndexEntry(parameter.name, v)
                        if seen.insert(entry).inserted { result.append(entry) }
                    }
                }
            }
        }
        return result
    }

    /// Every value reached by `path`, with its declared type.
    func values(at path: [SearchParameter.Step], in object: JSONObject, type: String) -> [(JSON, String)] {
        var found: [(JSON, String)] = []
        Self.collect(compile(path[...], from: type), in: object, into: &found)
        return found
    }

    // MARK: resolved paths

    /// One step of a resolved path: the JSON member to follow, the type its values have (a
    /// choice element gives one node per type: `valueQuantity`, `valueString`, ...), the step's
    /// filter, and the next steps (none: the values are the path's).
    final class PathNode: Sendable {
        let key: String
        let type: String
        let filter: (member: String, value: String)?
        let children: [PathNode]
        let isLast: Bool

        init(key: String, type: String, filter: (member: String, value: String)?, children: [PathNode], isLast: Bool) {
            (self.key, self.type, self.filter, self.children, self.isLast) = (key, type, filter, children, isLast)
        }
    }

    struct ResolvedPath: Sendable {
        let roots: [PathNode]
        let targetType: String?
    }

    final class PlanCache: Sendable {
        let byType = Mutex<[String: [(SearchParameter, [ResolvedPath])]]>([:])
    }

    func plan(for type: String) -> [(SearchParameter, [ResolvedPath])] {
        if let plan = plans.byType.withLock({ $0[type] }) { return plan }
        // Folded parameters have no rows of their own (`SearchParameterRegistry.folded`).
        let plan = registry.parameters(for: type).filter { registry.folded[type]?[$0.name] == nil }.map { p in
            (p, p.paths.map { ResolvedPath(roots: compile($0.steps[...], from: type), targetType: $0.targetType) })
        }
        plans.byType.withLock { $0[type] = plan }
        return plan
    }

    /// The nodes for `steps` starting at a value of `type` (none where the schema has no such element).
    func compile(_ steps: ArraySlice<SearchParameter.Step>, from type: String) -> [PathNode] {
        guard let step = steps.first, let def = schema.types[type],
              let element = def.elements.first(where: { $0.baseName == step.name }) else { return [] }
        let candidates: [(String, String)] = element.isChoice
            ? element.types.map { (step.name + FHIRSchema.upperFirst($0), $0) }
            : [(step.name, element.types[0])]
        let rest = steps.dropFirst()
        return candidates.compactMap { key, t in
            let children = rest.isEmpty ? [] : compile(rest, from: t)
            if !rest.isEmpty && children.isEmpty { return nil }
            return PathNode(key: key, type: t, filter: step.filter, children: children, isLast: rest.isEmpty)
        }
    }

    /// The values `nodes` reach in `object`, in document order, arrays flattened.
    static func collect(_ nodes: [PathNode], in object: JSONObject, into found: inout [(JSON, String)]) {
        for node in nodes {
            guard let value = object[node.key] else { continue }
            if case .array(let items) = value {
                for item in items { visit(item, node, &found) }
            } else {
                visit(value, node, &found)
            }
        }
    }

    private static func visit(_ value: JSON, _ node: PathNode, _ found: inout [(JSON, String)]) {
        if let filter = node.filter, value[filter.member]?.stringValue != filter.value { return }
        if node.isLast {
            found.append((value, node.type))
        } else if case .object(let o) = value {
            collect(node.children, in: o, into: &found)
        }
    }

    func indexValues(_ value: JSON, valueType: String, as paramType: SearchParameter.ParamType) -> [IndexValue] {
        switch paramType {
        case .token: return tokens(value, valueType)
        case .string: return strings(value, valueType).map { .string(StringNormalizer.normalize($0), exact: $0) }
        case .reference:
            if let canonical = value.stringValue { return [.reference(type: nil, id: nil, url: canonical)] }
            guard case .object(let o) = value, let ref = o["reference"]?.stringValue else { return [] }
            switch ReferenceSyntax.parse(ref) {
            case .relative(let t, let id, _): return [.reference(type: t, id: id, url: nil)]
            case .absolute(let url): return [.reference(type: nil, id: nil, url: url)]
            default: return []
            }
        case .date: return dates(value, valueType).map { .date(low: $0.low, high: $0.high) }
        case .uri:
            guard let s = value.stringValue else { return [] }
            return [.uri(s)]
        case .number:
            guard let n = value.numberText.flatMap(Double.init) else { return [] }
            return [.number(n)]
        case .quantity:
            guard case .object(let o) = value, let n = o["value"]?.numberText.flatMap(Double.init) else { return [] }
            let system = o["system"]?.stringValue
            var result: [IndexValue] = []
            if let code = o["code"]?.stringValue { result.append(.quantity(value: n, system: system, code: code)) }
            if let unit = o["unit"]?.stringValue, unit != o["code"]?.stringValue { result.append(.quantity(value: n, system: nil, code: unit)) }
            if result.isEmpty { result.append(.quantity(value: n, system: nil, code: nil)) }
            return result
        default: return []
        }
    }

    func tokens(_ value: JSON, _ type: String) -> [IndexValue] {
        switch type {
        case "code", "string", "id", "uri":
            return value.stringValue.map { [.token(system: nil, code: $0)] } ?? []
        case "boolean":
            return value.boolValue.map { [.token(system: nil, code: $0 ? "true" : "false")] } ?? []
        case "Coding":
            guard case .object(let o) = value, let code = o["code"]?.stringValue else { return [] }
            return [.token(system: o["system"]?.stringValue, code: code)]
        case "CodeableConcept":
            guard case .object(let o) = value, let codings = o["coding"]?.arrayValue else { return [] }
            return codings.flatMap { tokens($0, "Coding") }
        case "Identifier":
            guard case .object(let o) = value, let v = o["value"]?.stringValue else { return [] }
            return [.token(system: o["system"]?.stringValue, code: v)]
        case "ContactPoint":
            guard case .object(let o) = value, let v = o["value"]?.stringValue else { return [] }
            return [.token(system: o["system"]?.stringValue, code: v)]
        default:
            return []
        }
    }

    /// Rows for the token modifiers: `:text` (CodeableConcept.text, Coding.display, Identifier.type.text)
    /// as string rows under `name:text`, and `:of-type` (Identifier.type + value) under `name:of-type`.
    func tokenExtras(_ value: JSON, _ type: String, parameter: String) -> [IndexEntry] {
        guard case .object(let o) = value else { return [] }
        var texts: [String] = []
        var result: [IndexEntry] = []
        switch type {
        case "CodeableConcept":
            if let t = o["text"]?.stringValue { texts.append(t) }
            texts += (o["coding"]?.arrayValue ?? []).compactMap { $0["display"]?.stringValue }
        case "Coding":
            if let t = o["display"]?.stringValue { texts.append(t) }
        case "Identifier":
            if let t = o["type"]?["text"]?.stringValue { texts.append(t) }
            if let v = o["value"]?.stringValue {
                for coding in o["type"]?["coding"]?.arrayValue ?? [] {
                    guard let code = coding["code"]?.stringValue else { continue }
                    let system = coding["system"]?.stringValue ?? ""
                    result.append(IndexEntry(parameter + ":of-type", .token(system: system + "|" + code, code: v)))
                }
            }
        default:
            break
        }
        result += texts.map { IndexEntry(parameter + ":text", .string(StringNormalizer.normalize($0), exact: $0)) }
        return result
    }

    func strings(_ value: JSON, _ type: String) -> [String] {
        switch type {
        case "string", "markdown": return value.stringValue.map { [$0] } ?? []
        case "HumanName":
            guard case .object(let o) = value else { return [] }
            var parts: [String] = []
            for key in ["text", "family"] { if let s = o[key]?.stringValue { parts.append(s) } }
            for key in ["given", "prefix", "suffix"] { parts.append(contentsOf: o[key]?.arrayValue?.compactMap(\.stringValue) ?? []) }
            return parts
        case "Address":
            guard case .object(let o) = value else { return [] }
            var parts: [String] = []
            for key in ["text", "city", "district", "state", "postalCode", "country"] { if let s = o[key]?.stringValue { parts.append(s) } }
            parts.append(contentsOf: o["line"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            return parts
        default: return []
        }
    }

    func dates(_ value: JSON, _ type: String) -> [FHIRDateTime] {
        switch type {
        case "date", "dateTime", "instant":
            guard let s = value.stringValue else { return [] }
            let kind: FHIRDateTime.Kind = type == "date" ? .date : (type == "instant" ? .instant : .dateTime)
            return FHIRDateTime.parse(s, kind: kind).map { [$0] } ?? []
        case "Timing":
            // Each event, and the repeat bounds when they are a Period.
            guard case .object(let o) = value else { return [] }
            var result = (o["event"]?.arrayValue ?? []).flatMap { dates($0, "dateTime") }
            if let bounds = o["repeat"]?["boundsPeriod"] { result += dates(bounds, "Period") }
            return result
        case "Period":
            guard case .object(let o) = value else { return [] }
            let start = o["start"]?.stringValue.flatMap { FHIRDateTime.parse($0, kind: .dateTime) }
            let end = o["end"]?.stringValue.flatMap { FHIRDateTime.parse($0, kind: .dateTime) }
            if start == nil && end == nil { return [] }
            return [FHIRDateTime(precision: .second, low: start?.low ?? Int64.min, high: end?.high ?? Int64.max)]
        default: return []
        }
    }
}

/// Normalises text for case- and accent-insensitive matching (`Éric` → `eric`).
/// Chinese text passes through unchanged: a Hanzi prefix is matched as typed.
public enum StringNormalizer {
    public static func normalize(_ s: String) -> String {
        // ASCII, CJK ideographs and CJK punctuation fold to themselves but for A-Z, and fullwidth
        // ASCII (U+FF01-FF5E: "（", "Ａ") to ASCII (most names, addresses and displays here): done
        // without Foundation, which bridges every string it folds. The result is the same as
        // Foundation's (tested scalar by scalar).
        var plain = true
        var upper = false
        var wide = false
        for u in s.unicodeScalars {
            switch u.value {
            case 0x41...0x5A: upper = true
            case 0...0x7F, 0x3000...0x303F, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0x20000...0x2A6DF: continue
            case 0xFF01...0xFF5E: wide = true
            default: plain = false
            }
            if !plain { break }
        }
        guard plain else { return s.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil) }
        if wide {
            var out = String.UnicodeScalarView()
            for u in s.unicodeScalars {
                var v = u.value
                if v >= 0xFF01 && v <= 0xFF5E { v -= 0xFEE0 }
                if v >= 0x41 && v <= 0x5A { v |= 0x20 }
                out.append(Unicode.Scalar(v) ?? u)
            }
            return String(out)
        }
        guard upper else { return s }
        var bytes = Array(s.utf8)
        for i in bytes.indices where bytes[i] >= 0x41 && bytes[i] <= 0x5A { bytes[i] |= 0x20 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
