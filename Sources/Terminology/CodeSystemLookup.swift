import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// The code-system side of the terminology service (ADR 022): `$lookup`, `$validate-code` and
/// `$subsumes` answered from the concept rows and the closure a stored CodeSystem keeps
/// (`ConceptIndex`), never by parsing the CodeSystem itself.
public struct CodeSystemLookup: Sendable {
    public let store: any ResourceStore

    public init(store: any ResourceStore) {
        self.store = store
    }

    /// A stored concept with its code system's description.
    public struct Concept: Sendable {
        public let entry: ConceptEntry
        public let detail: JSONObject
        public var code: String { entry.code }
        public var display: String? { entry.display }
        public var inactive: Bool { detail["inactive"]?.boolValue ?? false }
        public var parents: [String] { detail["parent"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        public var children: [String] { detail["child"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        public var designations: [JSON] { detail["designation"]?.arrayValue ?? [] }

        init(_ entry: ConceptEntry) {
            self.entry = entry
            detail = (try? JSONParser.parse(Array(entry.detail.utf8)))?.objectValue ?? JSONObject()
        }

        /// The display in `language` (a designation whose language is it or starts with it), else the display.
        public func display(in language: String?) -> String? {
            guard let language, !language.isEmpty else { return display }
            return Self.designation(designations, language: language) ?? display
        }

        /// The value of the designation in `language` (exactly, else the same base language: zh for zh-CN).
        static func designation(_ designations: [JSON], language: String) -> String? {
            let wanted = language.lowercased(), base = wanted.split(separator: "-").first.map(String.init) ?? wanted
            let match = designations.first { ($0["language"]?.stringValue?.lowercased() ?? "") == wanted }
                ?? designations.first { ($0["language"]?.stringValue?.lowercased() ?? "").hasPrefix(base) }
            return match?["value"]?.stringValue
        }
    }

    /// The code system itself (its row of code ""), in `version` or its newest stored version.
    public func codeSystem(_ system: String, version: String?) async throws -> Concept? {
        try await store.concepts(system: system, version: version, .codes([""]), after: nil, limit: 100).newest.map(Concept.init)
    }

    /// A concept of `system`: of `version`, or of the newest stored version that has it.
    public func concept(_ system: String, _ code: String, version: String?) async throws -> Concept? {
        try await store.concepts(system: system, version: version, .codes([code]), after: nil, limit: 100).newest.map(Concept.init)
    }

    /// `version` if the code system is stored in it, else the newest; throws when `system` is unknown.
    func requireCodeSystem(_ system: String, version: String?, at location: String) async throws -> Concept {
        if let found = try await codeSystem(system, version: version) { return found }
        if let version, try await codeSystem(system, version: nil) != nil {
            throw FHIRError(.notFound, code: "not-found", "Code system '\(system)' is not stored in version '\(version)'", at: "version")
        }
        throw FHIRError(.notFound, code: "not-found", "Unknown code system '\(system)' (load it with huitong terminology load)", at: location)
    }

    /// `$lookup` (R4 CodeSystem-lookup): name, version, display (in `displayLanguage`),
    /// designations and properties, with `parent` and `child` from the hierarchy.
    public func lookup(_ input: CodeInputValue, displayLanguage: String?, properties: [String]) async throws -> JSON {
        let header = try await requireCodeSystem(input.system, version: input.version, at: "system")
        guard let concept = try await concept(input.system, input.code, version: header.entry.version) else {
            throw FHIRError(.notFound, code: "not-found", "Code '\(input.code)' is not in code system '\(input.system)'", at: "code")
        }
        let wanted = Set(properties)
        func wants(_ code: String) -> Bool { wanted.isEmpty || wanted.contains(code) }
        var out: [JSON] = [
            JSONObject.parameter("name", "valueString", .string(header.display ?? input.system)),
        ]
        if !concept.entry.version.isEmpty { out.append(JSONObject.parameter("version", "valueString", .string(concept.entry.version))) }
        out.append(JSONObject.parameter("display", "valueString", .string(concept.display(in: displayLanguage) ?? concept.code)))
        if let definition = concept.detail["definition"]?.stringValue, wants("definition") {
            out.append(JSONObject.parameter("definition", "valueString", .string(definition)))
        }
        if wants("designation") {
            for d in concept.designations {
                var parts: [JSON] = []
                if let language = d["language"] { parts.append(JSONObject.parameter("language", "valueCode", language)) }
                if let use = d["use"] { parts.append(JSONObject.parameter("use", "valueCoding", use)) }
                if let value = d["value"] { parts.append(JSONObject.parameter("value", "valueString", value)) }
                out.append(JSONObject.parameter("designation", parts: parts))
            }
        }
        func property(_ code: String, _ valueKey: String, _ value: JSON) -> JSON {
            JSONObject.parameter("property", parts: [JSONObject.parameter("code", "valueCode", .string(code)),
                                                     JSONObject.parameter("value", valueKey, value)])
        }
        if wants("parent") { for p in concept.parents { out.append(property("parent", "valueCode", .string(p))) } }
        if wants("child") { for c in concept.children { out.append(property("child", "valueCode", .string(c))) } }
        if wants("inactive") { out.append(property("inactive", "valueBoolean", .bool(concept.inactive))) }
        for p in concept.detail["property"]?.arrayValue ?? [] {
            guard let code = p["code"]?.stringValue, !["parent", "child", "inactive"].contains(code), wants(code),
                  let (key, value) = p.objectValue?.first(where: { $0.key.hasPrefix("value") }) else { continue }
            out.append(property(code, key, value))
        }
        return JSONObject.parameters(out)
    }

    /// `$subsumes` (R4 CodeSystem-subsumes): equivalent, subsumes, subsumed-by or not-subsumed.
    public func subsumes(system: String, version: String?, codeA: String, codeB: String) async throws -> JSON {
        let header = try await requireCodeSystem(system, version: version, at: "system")
        for (code, name) in [(codeA, "codeA"), (codeB, "codeB")] where try await concept(system, code, version: header.entry.version) == nil {
            throw FHIRError(.notFound, code: "not-found", "Code '\(code)' is not in code system '\(system)'", at: name)
        }
        let outcome: String
        if codeA == codeB {
            outcome = "equivalent"
        } else if try await isAncestor(codeA, of: codeB, system: system, version: header.entry.version) {
            outcome = "subsumes"
        } else if try await isAncestor(codeB, of: codeA, system: system, version: header.entry.version) {
            outcome = "subsumed-by"
        } else {
            outcome = "not-subsumed"
        }
        return JSONObject.parameters([JSONObject.parameter("outcome", "valueCode", .string(outcome))])
    }

    /// Whether `ancestor` is `code` or lies above it.
    public func isAncestor(_ ancestor: String, of code: String, system: String, version: String?) async throws -> Bool {
        try await store.concepts(system: system, version: version, .above(code), after: nil, limit: 10_000).contains { $0.code == ancestor }
    }

    /// `$validate-code` against a code system: whether the code is in it, and the display (if
    /// given) one of the concept's (its display or a designation, compared without case).
    public func validate(_ input: CodeInputValue) async throws -> (result: Bool, message: String?, display: String?) {
        guard let header = try await codeSystem(input.system, version: input.version) else {
            return (false, "Unknown code system '\(input.system)'" + (input.version.map { " version '\($0)'" } ?? ""), nil)
        }
        guard let concept = try await concept(input.system, input.code, version: header.entry.version) else {
            let fragment = header.detail["content"]?.stringValue == "fragment"
            return (false, "Code '\(input.code)' is not in code system '\(input.system)'" + (fragment ? " (a fragment: the code may exist)" : ""), nil)
        }
        if let given = input.display, let wrong = Self.wrongDisplay(given, display: concept.display, designations: concept.designations,
                                                                     system: input.system, code: input.code) {
            return (false, wrong, concept.display)
        }
        return (true, concept.inactive ? "Code '\(input.code)' is inactive" : nil, concept.display)
    }

    /// Why `given` is not the concept's display nor one of its designations (compared without
    /// case), or nil when it is one: the display check of both `$validate-code`s.
    static func wrongDisplay(_ given: String, display: String?, designations: [JSON], system: String, code: String) -> String? {
        let known = [display].compactMap { $0 } + designations.compactMap { $0["value"]?.stringValue }
        guard !known.contains(where: { $0.caseInsensitiveCompare(given) == .orderedSame }) else { return nil }
        return "Wrong display '\(given)' for '\(system)#\(code)': it is '\(display ?? "")'"
    }
}

/// A code with its system, as the public API takes it.
public struct CodeInputValue: Sendable {
    public var system: String
    public var code: String
    public var version: String?
    public var display: String?

    public init(system: String, code: String, version: String? = nil, display: String? = nil) {
        self.system = system
        self.code = code
        self.version = version
        self.display = display
    }
}
