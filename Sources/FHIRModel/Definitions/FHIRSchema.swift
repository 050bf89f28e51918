/// What the server knows of FHIR R4's structure: every resource, data type and backbone
/// element with its elements' types and cardinalities. Built once from `r4StructureText`.
public struct FHIRSchema: Sendable {
    /// One element of a type, e.g. `Observation.value[x]`.
    public struct Element: Sendable {
        public let name: String
        public let types: [String]
        public let min: Int
        public let isArray: Bool
        public var isChoice: Bool { name.hasSuffix("[x]") }
        /// For a choice element, the name without `[x]` (`value`).
        public var baseName: String { isChoice ? String(name.dropLast(3)) : name }
    }

    public enum Kind: String, Sendable { case resource, abstract, type }

    /// A resource, data type or backbone element definition.
    public struct TypeDefinition: Sendable {
        public let name: String
        public let kind: Kind
        public let elements: [Element]
        /// JSON member name → (element, concrete type). Choice elements appear once per type (`valueQuantity`).
        public let members: [String: (element: Element, type: String)]
    }

    public let types: [String: TypeDefinition]

    /// The R4 schema, parsed on first use.
    public static let r4: FHIRSchema = FHIRSchema(text: r4StructureText)

    public var resourceTypeNames: [String] {
        types.values.filter { $0.kind == .resource }.map(\.name).sorted()
    }

    public func isResourceType(_ name: String) -> Bool {
        types[name]?.kind == .resource
    }

    init(text: String) {
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
                    isArray: card == "*" || card == "+"))
            }
        }
        flush()
        types = result
    }

    static func upperFirst(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst()
    }
}
