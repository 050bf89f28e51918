import Foundation

/// Extracts search index entries from a resource, guided by the schema so that each
/// value is read as its declared type (a `code` is a token, a `HumanName` a string, ...).
public struct IndexExtractor: Sendable {
    public let schema: FHIRSchema
    public let registry: SearchParameterRegistry

    public init(schema: FHIRSchema = .r4, registry: SearchParameterRegistry = .r4) {
        self.schema = schema
        self.registry = registry
    }

    public func entries(for resource: JSONObject, type: String) -> [IndexEntry] {
        var result: [IndexEntry] = []
        var seen = Set<IndexEntry>()
        for parameter in registry.parameters(for: type) {
            for path in parameter.paths {
                for (value, valueType) in values(at: path.steps, in: resource, type: type) {
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
        var current: [(JSON, String)] = [(.object(object), type)]
        for step in path {
            let segment = step.name
            var next: [(JSON, String)] = []
            for (value, valueType) in current {
                guard case .object(let o) = value, let def = schema.types[valueType] else { continue }
                guard let element = def.elements.first(where: { $0.baseName == segment }) else { continue }
                let candidates: [(String, String)] = element.isChoice
                    ? element.types.map { (segment + FHIRSchema.upperFirst($0), $0) }
                    : [(segment, element.types[0])]
                for (key, t) in candidates {
                    guard let v = o[key] else { continue }
                    if case .array(let items) = v {
                        next.append(contentsOf: items.map { ($0, t) })
                    } else {
                        next.append((v, t))
                    }
                }
            }
            if let filter = step.filter {
                next = next.filter { $0.0[filter.member]?.stringValue == filter.value }
            }
            current = next
        }
        return current
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
        s.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
    }
}
