/// A search parameter: its name, type and the element paths it indexes
/// (paths are element names from the resource root; a choice element is named
/// without `[x]` and matches every type, e.g. `effective`).
public struct SearchParameter: Sendable {
    public enum ParamType: String, Sendable { case token, string, reference, date, uri, number, quantity, composite, special }

    public let name: String
    public let type: ParamType
    public let paths: [[String]]

    public init(_ name: String, _ type: ParamType, _ paths: [String]) {
        self.name = name
        self.type = type
        self.paths = paths.map { $0.split(separator: ".").map(String.init) }
    }
}

/// The search parameters known per resource type. This covers what conditional
/// interactions and the first clients need; the search-engine issue extends it to
/// every R4 parameter of the platform's resource types.
public struct SearchParameterRegistry: Sendable {
    public let byType: [String: [String: SearchParameter]]

    public static let r4 = SearchParameterRegistry(schema: .r4)

    public func parameter(_ name: String, for type: String) -> SearchParameter? {
        byType[type]?[name]
    }

    public func parameters(for type: String) -> [SearchParameter] {
        (byType[type] ?? [:]).values.sorted { $0.name < $1.name }
    }

    init(schema: FHIRSchema) {
        var result: [String: [String: SearchParameter]] = [:]
        func add(_ type: String, _ p: SearchParameter) { result[type, default: [:]][p.name] = p }
        for name in schema.resourceTypeNames {
            guard let def = schema.types[name] else { continue }
            let elements = Set(def.elements.map(\.baseName))
            if elements.contains("identifier") { add(name, SearchParameter("identifier", .token, ["identifier"])) }
            if elements.contains("status") { add(name, SearchParameter("status", .token, ["status"])) }
            if elements.contains("subject") {
                add(name, SearchParameter("subject", .reference, ["subject"]))
                add(name, SearchParameter("patient", .reference, ["subject"]))
            } else if elements.contains("patient") {
                add(name, SearchParameter("patient", .reference, ["patient"]))
            }
            if elements.contains("encounter") { add(name, SearchParameter("encounter", .reference, ["encounter"])) }
            if elements.contains("code") && def.members["code"]?.type == "CodeableConcept" {
                add(name, SearchParameter("code", .token, ["code"]))
            }
            if elements.contains("url") && def.kind == .resource && def.members["url"]?.type == "uri" {
                add(name, SearchParameter("url", .uri, ["url"]))
            }
        }
        for t in ["Patient", "Practitioner", "Person", "RelatedPerson"] {
            add(t, SearchParameter("name", .string, ["name"]))
            add(t, SearchParameter("family", .string, ["name.family"]))
            add(t, SearchParameter("given", .string, ["name.given"]))
            add(t, SearchParameter("gender", .token, ["gender"]))
            add(t, SearchParameter("telecom", .token, ["telecom"]))
        }
        for t in ["Patient", "Person", "RelatedPerson"] { add(t, SearchParameter("birthdate", .date, ["birthDate"])) }
        add("Organization", SearchParameter("name", .string, ["name", "alias"]))
        add("Location", SearchParameter("name", .string, ["name", "alias"]))
        add("Observation", SearchParameter("date", .date, ["effective"]))
        add("Observation", SearchParameter("category", .token, ["category"]))
        add("Condition", SearchParameter("onset-date", .date, ["onset"]))
        add("Encounter", SearchParameter("date", .date, ["period"]))
        add("Person", SearchParameter("link", .reference, ["link.target"]))
        byType = result
    }
}
