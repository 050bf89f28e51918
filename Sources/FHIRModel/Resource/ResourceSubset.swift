/// The `_summary` modes of the R4 search page ("Summary").
public enum SummaryMode: String, Sendable {
    /// Only elements marked Σ in the base definition (recursively through backbone elements).
    case summary = "true"
    /// `text`, `id`, `meta` and the top-level mandatory elements.
    case text
    /// Everything but `text`.
    case data
    /// The whole resource.
    case full = "false"
}

/// Shrinks resources for `_summary` and `_elements`, and tags them SUBSETTED as the spec asks.
public enum ResourceSubset {
    /// Elements marked Σ, by resource or backbone type name.
    static let summaryElements: [String: Set<String>] = {
        var result: [String: Set<String>] = [:]
        for line in r4SummaryText.split(separator: "\n") {
            for part in line.split(separator: ";") {
                let words = part.split(separator: " ")
                guard let name = words.first else { continue }
                result[String(name)] = Set(words.dropFirst().map(String.init))
            }
        }
        return result
    }()

    /// Applies `mode` and then `elements` (top-level names) to a resource. Nil when nothing changes.
    public static func apply(_ resource: JSONObject, summary mode: SummaryMode, elements: [String]?,
                             schema: FHIRSchema = .r4) -> JSONObject? {
        guard let type = resource["resourceType"]?.stringValue, let definition = schema.types[type] else { return nil }
        var out = resource
        switch mode {
        case .full: break
        case .summary: out = summarize(resource, definition, schema)
        case .data: out["text"] = nil
        case .text: out = keep(resource, definition) { $0 == "text" }
        }
        if let elements {
            let wanted = Set(elements)
            out = keep(out, definition) { wanted.contains($0) }
        }
        if mode == .full && elements == nil { return nil }
        return tagged(out)
    }

    /// Keeps `resourceType`, `id`, `meta`, the mandatory elements and those `wanted` names
    /// (primitive extension siblings `_x` follow their element).
    static func keep(_ o: JSONObject, _ definition: FHIRSchema.TypeDefinition, _ wanted: (String) -> Bool) -> JSONObject {
        var out = JSONObject()
        for (key, value) in o {
            let name = key.hasPrefix("_") ? String(key.dropFirst()) : key
            let element = definition.members[name]?.element
            if ["resourceType", "id", "meta"].contains(name) || wanted(name) || element.map({ wanted($0.baseName) }) == true
                || (element?.min ?? 0) > 0 {
                out.appendUnchecked(key, value)
            }
        }
        return out
    }

    /// The Σ elements of a resource or backbone element; data-type values are kept whole.
    static func summarize(_ o: JSONObject, _ definition: FHIRSchema.TypeDefinition, _ schema: FHIRSchema) -> JSONObject {
        guard let marked = summaryElements[definition.name] else { return o }
        var out = JSONObject()
        for (key, value) in o {
            if key == "resourceType" { out.appendUnchecked(key, value); continue }
            let name = key.hasPrefix("_") ? String(key.dropFirst()) : key
            guard let (element, type) = definition.members[name], marked.contains(element.name) else { continue }
            if summaryElements[type] != nil, let backbone = schema.types[type] {
                out.appendUnchecked(key, map(value) { summarize($0, backbone, schema) })
            } else {
                out.appendUnchecked(key, value)
            }
        }
        return out
    }

    static func map(_ value: JSON, _ f: (JSONObject) -> JSONObject) -> JSON {
        switch value {
        case .object(let o): return .object(f(o))
        case .array(let a): return .array(a.map { map($0, f) })
        default: return value
        }
    }

    static func tagged(_ resource: JSONObject) -> JSONObject {
        var out = resource
        var meta = out["meta"]?.objectValue ?? JSONObject()
        var tags = meta["tag"]?.arrayValue ?? []
        let subsetted = JSON.object(JSONObject([("system", .string("http://terminology.hl7.org/CodeSystem/v3-ObservationValue")),
                                                 ("code", .string("SUBSETTED"))]))
        if !tags.contains(subsetted) { tags.append(subsetted) }
        meta["tag"] = .array(tags)
        out.set("meta", .object(meta), insertingAt: out["id"] == nil ? 1 : 2)
        return out
    }
}
