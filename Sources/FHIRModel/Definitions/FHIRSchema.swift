/// What the server knows of FHIR R4's structure: every resource, data type and backbone
/// element with its elements' types and cardinalities. Built once from `r4StructureText`.
public struct FHIRSchema: Sendable {
    /// One element of a type, e.g. `Observation.value[x]`.
    public struct Element: Sendable {
        public let name: String
        public let types: [String]
        public let min: Int
        public let isArray: Bool
        /// The element's required binding in R4, when its value set can be enumerated.
        public var binding: Binding?
        /// Its extensible or preferred binding (advice: `$validate` warnings).
        public var advisory: Binding?
        public var isChoice: Bool { name.hasSuffix("[x]") }
        /// For a choice element, the name without `[x]` (`value`).
        public var baseName: String { isChoice ? String(name.dropLast(3)) : name }
    }

    public enum Kind: String, Sendable { case resource, abstract, type }

    /// A binding to a value set that can be enumerated (R4 terminologies.html#strength). A `code`
    /// element holds one of `codes`; a CodeableConcept or Coding holds a coding of one of the value
    /// set's `systems` with one of its codes there (other codings may stand beside it).
    public struct Binding: Sendable {
        /// required, extensible or preferred.
        public let strength: String
        public let valueSet: String
        public let codes: Set<String>
        /// For a Coding or CodeableConcept: system → codes.
        public let systems: [String: Set<String>]
        /// The codes in the order the table gives them, for messages.
        public let listed: [String]
    }

    /// A resource, data type or backbone element definition.
    public struct TypeDefinition: Sendable {
        public let name: String
        public let kind: Kind
        public let elements: [Element]
        /// JSON member name → (element, concrete type). Choice elements appear once per type (`valueQuantity`).
        public let members: [String: (element: Element, type: String)]
    }

    public let types: [String: TypeDefinition]

    /// The R4 schema with its required bindings, parsed on first use.
    public static let r4: FHIRSchema = FHIRSchema(text: r4StructureText, bindings: r4RequiredBindingsText, advisory: r4AdvisoryBindingsText)

    public var resourceTypeNames: [String] {
        types.values.filter { $0.kind == .resource }.map(\.name).sorted()
    }

    public func isResourceType(_ name: String) -> Bool {
        types[name]?.kind == .resource
    }

    init(text: String, bindings: String = "", advisory: String = "") {
        let bindingTable = Self.parseBindings(bindings, withStrength: false)
        let advisoryTable = Self.parseBindings(advisory, withStrength: true)
        var result: [String: TypeDefinition] = [:]
        var currentName: String?
        var currentKind = Kind.type
        var elements: [Element] = []
        func flush() {
            guard let name = currentName else { return }
            var members: [String: (element: Element, type: String)] = [:]
            for e in elements {
                if e.isChoice {
                    for t in e.types { members[e.baseName + Self.upperFirst(t)] = (e, t) }
                } else {
                    members[e.name] = (e, e.types[0])
                }
            }
            result[name] = TypeDefinition(name: name, kind: currentKind, elements: elements, members: members)
        }
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ")
            if line.hasPrefix("@") {
                flush()
                currentName = String(parts[0].dropFirst())
                currentKind = Kind(rawValue: String(parts[1])) ?? .type
                elements = []
            } else if parts.count == 3 {
                let card = parts[2]
                elements.append(Element(
                    name: String(parts[0]),
                    types: parts[1].split(separator: "|").map(String.init),
                    min: card == "1" || card == "+" ? 1 : 0,
                    isArray: card == "*" || card == "+",
                    binding: currentName.flatMap { bindingTable[$0 + "." + parts[0]] },
                    advisory: currentName.flatMap { advisoryTable[$0 + "." + parts[0]] }))
            }
        }
        flush()
        types = result
    }

    /// "Type.element [strength] valueSet code ..." and "Type.element [strength] valueSet =system code
    /// ... =system code ..." lines (see `r4RequiredBindingsText`).
    static func parseBindings(_ text: String, withStrength: Bool) -> [String: Binding] {
        var table: [String: Binding] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var parts = line.split(separator: " ").map(String.init)[...]
            guard parts.count >= (withStrength ? 4 : 3), let path = parts.popFirst() else { continue }
            let strength = withStrength ? parts.removeFirst() : "required"
            let valueSet = parts.removeFirst()
            var codes: [String] = [], systems: [String: Set<String>] = [:], system: String?
            for word in parts {
                if word.hasPrefix("="), word.contains(":") {   // "=http://..." names a system; "=" itself is a code (filter-operator)
                    system = String(word.dropFirst())
                } else {
                    codes.append(word)
                    if let system { systems[system, default: []].insert(word) }
                }
            }
            table[path] = Binding(strength: strength, valueSet: valueSet, codes: Set(codes), systems: systems, listed: codes)
        }
        return table
    }

    static func upperFirst(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst()
    }
}
