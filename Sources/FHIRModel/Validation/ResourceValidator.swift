import Crypto

/// Checks a resource against the R4 structure: known type, known elements, cardinality,
/// required elements, one type per choice element, primitive formats and reference syntax.
/// It reports *every* problem with its FHIRPath location rather than stopping at the first.
public struct ResourceValidator: Sendable {
    public let schema: FHIRSchema
    /// Also report codes outside the value sets of extensible and preferred bindings, as warnings
    /// (`$validate`; a write checks required bindings only).
    public let advice: Bool

    public init(schema: FHIRSchema = .r4, advice: Bool = false) {
        self.schema = schema
        self.advice = advice
    }

    /// All problems in `resource`; empty when valid.
    public func validate(_ resource: JSON) -> [Issue] {
        var issues: [Issue] = []
        var path = Trail()
        validateResource(resource, path: &path, issues: &issues)
        return issues
    }

    /// Where the validator is, as a FHIRPath-like location; made into text only for an issue
    /// (building every element's path string was most of the validator's cost).
    struct Trail {
        enum Part { case member(String), index(Int) }
        var parts: [Part] = []

        var text: String? {
            guard case .member(let root)? = parts.first else { return nil }
            var s = root
            for p in parts.dropFirst() {
                switch p {
                case .member(let m): s += "." + m
                case .index(let i): s += "[\(i)]"
                }
            }
            return s
        }

        func text(_ member: String) -> String { (text.map { $0 + "." } ?? "") + member }

        mutating func with<T>(_ part: Part, _ body: (inout Trail) -> T) -> T {
            parts.append(part)
            defer { parts.removeLast() }
            return body(&self)
        }
    }

    private func validateResource(_ value: JSON, path: inout Trail, issues: inout [Issue]) {
        guard case .object(let object) = value else {
            issues.append(Issue(code: "structure", "A resource must be a JSON object, found \(value.kindName)", at: path.text))
            return
        }
        guard let typeName = object["resourceType"]?.stringValue else {
            issues.append(Issue(code: "structure", "Missing 'resourceType'", at: path.text))
            return
        }
        // A top-level resource's locations start with its type.
        let root = path.parts.isEmpty
        if root { path.parts.append(.member(typeName)) }
        defer { if root { path.parts.removeLast() } }
        guard let definition = schema.types[typeName], definition.kind == .resource else {
            issues.append(Issue(code: "not-supported", "Unknown resource type '\(typeName)'", at: path.text))
            return
        }
        if let id = object["id"], let s = id.stringValue, !FHIRPrimitive.isValidID(s) {
            issues.append(Issue(code: "value", "'\(s)' is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')", at: path.text("id")))
            return validateObject(object.removing("id"), definition: definition, path: &path, issues: &issues)
        }
        validateObject(object, definition: definition, path: &path, issues: &issues)
        if typeName == "Bundle" { validateBundleLinks(object, path: &path, issues: &issues) }
    }

    /// A Bundle's links name each relation once (`self`, `next`, ...): a reader follows one.
    private func validateBundleLinks(_ bundle: JSONObject, path: inout Trail, issues: inout [Issue]) {
        var seen = Set<String>()
        for (i, link) in (bundle["link"]?.arrayValue ?? []).enumerated() {
            guard let relation = link["relation"]?.stringValue else { continue }
            if !seen.insert(relation).inserted {
                issues.append(Issue(code: "invariant", "Bundle.link relation '\(relation)' appears more than once", at: path.text("link[\(i)].relation")))
            }
        }
    }

    /// An Attachment's stated `size` and `hash` (base64 SHA-1) must be those of its inline `data`.
    private func validateAttachment(_ attachment: JSONObject, path: inout Trail, issues: inout [Issue]) {
        guard let data = attachment["data"]?.stringValue, let bytes = Base64.decode(data) else { return }
        if let size = attachment["size"]?.numberText, let stated = Int(size), stated != bytes.count {
            issues.append(Issue(code: "value", "Attachment size \(stated) does not match its data (\(bytes.count) bytes)", at: path.text("size")))
        }
        if let hash = attachment["hash"]?.stringValue {
            let actual = Base64.encode(Array(Insecure.SHA1.hash(data: bytes)))
            if Base64.decode(hash) != Base64.decode(actual) {
                issues.append(Issue(code: "value", "Attachment hash does not match its data (SHA-1 of the data is \(actual))", at: path.text("hash")))
            }
        }
    }

    private func validateObject(_ object: JSONObject, definition: FHIRSchema.TypeDefinition, path: inout Trail, issues: inout [Issue]) {
        if object.isEmpty {
            issues.append(Issue(code: "structure", "Empty object: an element must have a value or children", at: path.text))
            return
        }
        var choicesSeen: [String: String] = [:]
        for (key, value) in object {
            if key == "resourceType" && definition.kind == .resource { continue }
            if key == "_id" {
                // Resource.id and Element.id are system strings: no extensions (R4 json.html#primitive).
                issues.append(Issue(code: "structure", "Extensions are not allowed on 'id'", at: path.text("id")))
                continue
            }
            if key.utf8.first == UInt8(ascii: "_") {
                validatePrimitiveExtension(String(key.dropFirst()), value, in: object, definition: definition, path: &path, issues: &issues)
                continue
            }
            guard let (element, type) = definition.members[key] else {
                issues.append(Issue(code: "structure", "Unknown element '\(key)' in \(definition.name)", at: path.text(key)))
                continue
            }
            if element.isChoice {
                if let other = choicesSeen[element.baseName] {
                    issues.append(Issue(code: "structure", "Only one of '\(other)' and '\(key)' may be present (\(element.name) takes one type)", at: path.text(key)))
                }
                choicesSeen[element.baseName] = key
            }
            // A primitive may carry its extensions in `_key` (only primitives look for it).
            let hasExtension = FHIRPrimitive(typeName: type) != nil && object["_" + key] != nil
            path.with(.member(key)) { path in
                validateElement(value, element: element, type: type, path: &path, primitiveExtensionPresent: hasExtension, issues: &issues)
            }
        }
        for element in definition.elements where element.min > 0 {
            let present: Bool
            if element.isChoice {
                present = element.types.contains { object[element.baseName + FHIRSchema.upperFirst($0)] != nil || object["_" + element.baseName + FHIRSchema.upperFirst($0)] != nil }
            } else {
                present = object[element.name] != nil || object["_" + element.name] != nil
            }
            if !present {
                let shown = element.isChoice ? element.name : element.name
                issues.append(Issue(code: "required", "Missing required element '\(shown)' (minimum cardinality \(element.min))", at: path.text(element.baseName)))
            }
        }
    }

    private func validateElement(_ value: JSON, element: FHIRSchema.Element, type: String, path: inout Trail,
                                 primitiveExtensionPresent: Bool, issues: inout [Issue]) {
        if element.isArray {
            guard case .array(let items) = value else {
                issues.append(Issue(code: "structure", "'\(element.name)' repeats and must be a JSON array, found \(value.kindName)", at: path.text))
                return
            }
            if items.isEmpty {
                issues.append(Issue(code: "structure", "Empty array: omit the element instead", at: path.text))
            }
            for (i, item) in items.enumerated() {
                if case .null = item, primitiveExtensionPresent { continue }
                path.with(.index(i)) { path in validateValue(item, type: type, element: element, path: &path, issues: &issues) }
            }
        } else {
            if case .array = value {
                issues.append(Issue(code: "structure", "'\(element.name)' does not repeat and must not be an array", at: path.text))
                return
            }
            validateValue(value, type: type, element: element, path: &path, issues: &issues)
        }
    }

    /// The bindings to check of an element: its required one, and with `advice` its advisory one.
    func bindings(_ element: FHIRSchema.Element?) -> [FHIRSchema.Binding] {
        guard let element else { return [] }
        switch (element.binding, advice ? element.advisory : nil) {
        case (nil, nil): return []
        case (let b?, nil), (nil, let b?): return [b]
        case (let b?, let a?): return [b, a]
        }
    }

    private func validateValue(_ value: JSON, type: String, element: FHIRSchema.Element? = nil,
                               path: inout Trail, issues: inout [Issue]) {
        if case .null = value {
            issues.append(Issue(code: "structure", "null is not allowed: omit the element instead", at: path.text))
            return
        }
        if let primitive = FHIRPrimitive(typeName: type) {
            if let problem = primitive.problem(with: value) {
                issues.append(Issue(code: "value", "Invalid \(type): \(problem)", at: path.text))
            } else if let code = value.stringValue {
                for binding in bindings(element) where !binding.codes.contains(code) {
                    issues.append(Issue(binding.severity, code: "code-invalid", "'\(code)' is not in the value set \(binding.valueSet) of this \(binding.strength) binding: \(binding.advice)\(binding.shown)", at: path.text))
                }
            }
            return
        }
        if type == "Resource" {
            validateResource(value, path: &path, issues: &issues)
            return
        }
        guard let definition = schema.types[type] else { return }
        guard case .object(let object) = value else {
            issues.append(Issue(code: "structure", "\(type) must be a JSON object, found \(value.kindName)", at: path.text))
            return
        }
        validateObject(object, definition: definition, path: &path, issues: &issues)
        for binding in bindings(element) { validateConcept(object, type: type, binding: binding, path: &path, issues: &issues) }
        if type == "Attachment" { validateAttachment(object, path: &path, issues: &issues) }
        if type == "Reference", let reference = object["reference"]?.stringValue, let problem = ReferenceSyntax.problem(reference) {
            issues.append(Issue(code: "value", problem, at: path.text("reference")))
        }
    }

    /// A CodeableConcept or Coding under a required binding carries a coding of the value set
    /// (other codings may stand beside it: R4 terminologies.html#required). Under an extensible or
    /// preferred binding one without such a coding is worth a warning, unless it has no coding at all
    /// (text alone is what those bindings allow when no code fits).
    private func validateConcept(_ object: JSONObject, type: String, binding: FHIRSchema.Binding,
                                 path: inout Trail, issues: inout [Issue]) {
        let codings: [(JSONObject, String)]
        switch type {
        case "Coding": codings = [(object, path.text ?? "")]
        case "CodeableConcept":
            codings = (object["coding"]?.arrayValue ?? []).enumerated().compactMap { i, c in
                c.objectValue.map { ($0, path.text("coding[\(i)]")) }
            }
        default: return
        }
        var found = false
        for (coding, location) in codings {
            guard let system = coding["system"]?.stringValue, let known = binding.systems[system],
                  let code = coding["code"]?.stringValue else { continue }
            if known.contains(code) {
                found = true
            } else {
                issues.append(Issue(binding.severity, code: "code-invalid", "'\(code)' is not a code of \(system) in the value set \(binding.valueSet) of this \(binding.strength) binding: \(binding.advice)\(binding.shown)", at: location + ".code"))
                return
            }
        }
        if !found && (binding.strength == "required" || !codings.isEmpty) {
            let systems = binding.systems.keys.sorted().joined(separator: " or ")
            issues.append(Issue(binding.severity, code: "code-invalid", "No coding from \(systems) is given, and this \(binding.strength) binding (\(binding.valueSet)) \(binding.strength == "required" ? "needs" : "asks for") one of \(binding.shown)", at: path.text))
        }
    }

    private func validatePrimitiveExtension(_ name: String, _ value: JSON, in object: JSONObject,
                                            definition: FHIRSchema.TypeDefinition, path: inout Trail, issues: inout [Issue]) {
        path.with(.member("_" + name)) { path in
            guard let (element, type) = definition.members[name], FHIRPrimitive(typeName: type) != nil else {
                issues.append(Issue(code: "structure", "'_\(name)' does not belong to a primitive element of \(definition.name)", at: path.text))
                return
            }
            guard let elementDefinition = schema.types["Element"] else { return }
            func check(_ v: JSON, _ path: inout Trail) {
                guard case .object(let o) = v else {
                    issues.append(Issue(code: "structure", "Primitive extension must be an object, found \(v.kindName)", at: path.text))
                    return
                }
                // What the platform seals is its own to write (ADR 012, 027): a sent token would be
                // opened for readers in place of what was checked.
                if o["extension"]?.arrayValue?.contains(where: { $0["url"]?.stringValue == Self.encryptedValueURL }) == true {
                    issues.append(Issue(code: "structure", "The extension \(Self.encryptedValueURL) is the platform's own (values it "
                                        + "encrypts at rest); send the value itself", at: path.text))
                }
                // Where a document kept as a stream is (ADR 029): shown, never taken back; a Binary
                // that sent it back would lose its document without saying so.
                if o["extension"]?.arrayValue?.contains(where: { $0["url"]?.stringValue == Self.storedDocumentURL }) == true {
                    issues.append(Issue(code: "structure", "The extension \(Self.storedDocumentURL) is the platform's own (it shows where a "
                                        + "large document is read); send the document itself, in its own content type", at: path.text))
                }
                validateObject(o, definition: elementDefinition, path: &path, issues: &issues)
            }
            // A required binding needs a code even where extensions stand in for the value (a
            // data-absent-reason, say), unless a cross-version extension carries the value of another
            // FHIR version (`http://hl7.org/fhir/5.0/StructureDefinition/extension-...`).
            let codeMissing = element.binding != nil && type == "code" && !Self.carriesCrossVersionValue(value)
            /// Reported at the element itself (`category[0]`), not at its `_category`.
            func reportMissingCode(index: Int? = nil) {
                guard let binding = element.binding else { return }
                var at = path
                at.parts[at.parts.count - 1] = .member(name)
                if let index { at.parts.append(.index(index)) }
                issues.append(Issue(code: "code-invalid", "No code is given, and this required binding\(binding.named) needs one of \(binding.shown)", at: at.text))
            }
            if element.isArray {
                guard case .array(let items) = value else {
                    issues.append(Issue(code: "structure", "'_\(name)' must be an array like '\(name)'", at: path.text))
                    return
                }
                if codeMissing {
                    let values = object[name]?.arrayValue ?? []
                    for i in items.indices where i >= values.count || values[i] == .null { reportMissingCode(index: i) }
                }
                // The two arrays pair up item by item (R4 json.html#primitive).
                if case .array(let values)? = object[name], values.count != items.count {
                    issues.append(Issue(code: "structure", "'_\(name)' has \(items.count) items but '\(name)' has \(values.count): they must pair up", at: path.text))
                }
                for (i, item) in items.enumerated() where item != .null { path.with(.index(i)) { check(item, &$0) } }
            } else {
                if codeMissing && (object[name] == nil || object[name] == .null) { reportMissingCode() }
                check(value, &path)
            }
        }
    }
}

extension ResourceValidator {
    /// The platform's extension for values encrypted at rest (`IdentifierProtection.encryptedValueURL`).
    public static let encryptedValueURL = "https://huitong.health/fhir/StructureDefinition/encrypted-value"
    /// The platform's extension in a Binary's `_data` for a document kept as a stream (ADR 029).
    public static let storedDocumentURL = "https://huitong.health/fhir/StructureDefinition/stored-document"

    static func carriesCrossVersionValue(_ value: JSON) -> Bool {
        let items = value.arrayValue ?? [value]
        return items.contains { item in
            (item["extension"]?.arrayValue ?? []).contains { ext in
                guard let url = ext["url"]?.stringValue, url.hasPrefix("http://hl7.org/fhir/") else { return false }
                return url.dropFirst("http://hl7.org/fhir/".count).split(separator: "/").dropFirst().first == "StructureDefinition"
                    && url.contains("/StructureDefinition/extension-")
            }
        }
    }
}

extension FHIRSchema.Binding {
    var named: String { " (\(valueSet))" }
    var severity: Issue.Severity { strength == "required" ? .error : .warning }
    var advice: String { strength == "required" ? "use one of " : "a code of it should be used where one fits: " }
    var shown: String {
        listed.count <= 20 ? listed.joined(separator: " | ") : listed.prefix(20).joined(separator: " | ") + " | ... (\(listed.count) codes)"
    }
}

extension JSONObject {
    func removing(_ key: String) -> JSONObject {
        var copy = self
        copy[key] = nil
        return copy
    }
}
