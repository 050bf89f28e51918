import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Platform
import Store

/// `ValueSet/$expand` and `ValueSet/$validate-code` (R4), on `ValueSetExpander`.
public struct ValueSetOperations: Sendable {
    public let expander: ValueSetExpander

    public init(store: any ResourceStore) {
        expander = ValueSetExpander(store: store)
    }

    /// What to show of an expansion.
    public struct Options: Sendable {
        public var filter: String?
        public var offset = 0
        public var count: Int?
        public var activeOnly = false
        public var displayLanguage: String?
        public var includeDesignations = false
        public init() {}
    }

    /// The value set with its `expansion` (total, offset, the page of `contains`).
    public func expand(_ valueSet: JSONObject, _ options: Options) async throws -> JSON {
        var codes = try await expander.expand(valueSet)
        if options.activeOnly { codes.removeAll(where: \.inactive) }
        if let filter = options.filter?.trimmingCharacters(in: .whitespaces), !filter.isEmpty {
            let matcher = TextFilter(filter)
            codes = codes.filter { matcher.matches($0) }
        }
        let total = codes.count
        let page = codes.dropFirst(options.offset).prefix(options.count ?? total)
        var contains: [JSON] = []
        for c in page {
            var o = JSONObject([("system", .string(c.system))])
            if let v = c.version { o["version"] = .string(v) }
            o["code"] = .string(c.code)
            let designations = c.designationList()
            let display = options.displayLanguage.flatMap { CodeSystemLookup.Concept.designation(designations, language: $0) } ?? c.display
            if let display { o["display"] = .string(display) }
            if c.inactive { o["inactive"] = .bool(true) }
            if options.includeDesignations, !designations.isEmpty { o["designation"] = .array(designations) }
            contains.append(.object(o))
        }
        var parameters: [JSON] = [JSONObject.parameter("offset", "valueInteger", .number(String(options.offset)))]
        if let count = options.count { parameters.append(JSONObject.parameter("count", "valueInteger", .number(String(count)))) }
        if let filter = options.filter { parameters.append(JSONObject.parameter("filter", "valueString", .string(filter))) }
        if options.activeOnly { parameters.append(JSONObject.parameter("activeOnly", "valueBoolean", .bool(true))) }
        if let language = options.displayLanguage { parameters.append(JSONObject.parameter("displayLanguage", "valueCode", .string(language))) }
        var expansion = JSONObject([
            ("identifier", .string("urn:uuid:" + UUID().uuidString.lowercased())),
            ("timestamp", .string(FHIRDateTime.formatInstant(micros: Int64(Date().timeIntervalSince1970 * 1_000_000)))),
            ("total", .number(String(total))),
            ("offset", .number(String(options.offset))),
            ("parameter", .array(parameters)),
        ])
        if !contains.isEmpty { expansion["contains"] = .array(contains) }
        var out = JSONObject([("resourceType", .string("ValueSet"))])
        for key in ["id", "url", "version", "name", "title", "status"] { if let v = valueSet[key] { out[key] = v } }
        if out["status"] == nil { out["status"] = .string("active") }
        out["expansion"] = .object(expansion)
        return .object(out)
    }

    /// Whether a code (with its system, and display if given) is in the value set.
    public func validate(_ valueSet: JSONObject, system: String?, code: String, display: String?) async throws -> (Bool, String?, String?) {
        let codes = try await expander.expand(valueSet)
        let url = valueSet["url"]?.stringValue ?? "(inline)"
        guard let found = codes.first(where: { $0.code == code && (system == nil || $0.system == system) }) else {
            return (false, "Code '\(system.map { $0 + "#" } ?? "")\(code)' is not in value set '\(url)'", nil)
        }
        if let display, let wrong = CodeSystemLookup.wrongDisplay(display, display: found.display, designations: found.designationList(),
                                                                 system: found.system, code: code) {
            return (false, wrong, found.display)
        }
        return (true, found.inactive ? "Code '\(code)' is inactive" : nil, found.display)
    }
}

/// `$expand`'s `filter`: the text in a display or designation (without case), or — for Chinese
/// displays — in their pinyin, written out (gaoxueya) or as initials (gxy).
struct TextFilter {
    let needle: String

    init(_ text: String) { needle = text.lowercased() }

    func matches(_ code: ValueSetExpander.Code) -> Bool {
        let texts = [code.display, code.code].compactMap { $0 } + code.designationList().compactMap { $0["value"]?.stringValue }
        for text in texts {
            if text.lowercased().contains(needle) { return true }
            if text.contains(where: Pinyin.isHan) {
                let syllables = Pinyin.syllables(text).map(Pinyin.toneless)
                if syllables.joined().contains(needle) || String(syllables.compactMap(\.first)).contains(needle) { return true }
            }
        }
        return false
    }
}
