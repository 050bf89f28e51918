/// A search parameter: its name, type and the element paths it indexes
/// (paths are element names from the resource root; a choice element is named
/// without `[x]` and matches every type, e.g. `effective`).
public struct SearchParameter: Sendable {
    public enum ParamType: String, Sendable { case token, string, reference, date, uri, number, quantity, composite, special }

    /// One step of a path: an element name, optionally restricted to elements whose
    /// `member` equals `value` (e.g. `telecom(system=phone)`).
    public struct Step: Sendable, Equatable {
        public let name: String
        public let filter: (member: String, value: String)?

        public static func == (a: Step, b: Step) -> Bool {
            a.name == b.name && a.filter?.member == b.filter?.member && a.filter?.value == b.filter?.value
        }
    }

    /// A path from the resource root, and for references an optional target type.
    public struct Path: Sendable {
        public let steps: [Step]
        public let targetType: String?

        /// The path as written in the table (`telecom(system=phone)`, `subject{Patient}`).
        var text: String {
            steps.map { s in s.name + (s.filter.map { "(\($0.member)=\($0.value))" } ?? "") }.joined(separator: ".")
                + (targetType.map { "{\($0)}" } ?? "")
        }
    }

    public let name: String
    public let type: ParamType
    public let paths: [Path]

    public init(_ name: String, _ type: ParamType, _ paths: [String]) {
        self.name = name
        self.type = type
        self.paths = paths.map(Self.parsePath)
    }

    static func parsePath(_ text: String) -> Path {
        var body = Substring(text)
        var target: String?
        if body.hasSuffix("}"), let brace = body.firstIndex(of: "{") {
            target = String(body[body.index(after: brace)..<body.index(before: body.endIndex)])
            body = body[..<brace]
        }
        let steps = body.split(separator: ".").map { part -> Step in
            guard let open = part.firstIndex(of: "("), part.hasSuffix(")") else { return Step(name: String(part), filter: nil) }
            let inner = part[part.index(after: open)..<part.index(before: part.endIndex)].split(separator: "=", maxSplits: 1)
            return Step(name: String(part[..<open]), filter: inner.count == 2 ? (String(inner[0]), String(inner[1])) : nil)
        }
        return Path(steps: steps, targetType: target)
    }
}

/// The search parameters known per resource type: the R4 table in `R4SearchParameters.swift`
/// for the platform's resource types, common parameters (`_tag`, `_profile`, ...) for every
/// type, and for other types the obvious ones derived from their structure (identifier,
/// status, subject/patient, encounter, code).
public struct SearchParameterRegistry: Sendable {
    public let byType: [String: [String: SearchParameter]]
    /// Parameters whose paths are exactly those of other parameters of the type together
    /// (`Observation.combo-code` = `code` ∪ `component-code`), or exactly another's
    /// (`Patient.phonetic` = `name`): they get no index rows of their own, and a search on one
    /// reads the rows of those it is made of (`stored(_:for:)`). An Observation had 4 such rows of
    /// its 12, a Patient and its master Person 2 each. Reference parameters are never folded
    /// (includes and chains name them in their own SQL).
    public let folded: [String: [String: [String]]]

    public static let r4 = SearchParameterRegistry(schema: .r4, table: r4SearchParameterText, omitting: notOffered)

    /// R4 parameters the platform does not index, and so does not offer (the CapabilityStatement
    /// lists what is offered). A master `Person` (居民主索引) is written with every registration
    /// that links to it; it is found through its links and identifiers, or by name, gender and
    /// birth date, while search by address or phone belongs to the facilities' `Patient`s
    /// (PDQm). Not indexing these saves ten index rows, each a random B-tree page, per Person write.
    static let notOffered: [String: Set<String>] = [
        "Person": ["address", "address-city", "address-country", "address-postalcode", "address-state", "address-use",
                   "telecom", "phone", "email"],
    ]

    public func parameter(_ name: String, for type: String) -> SearchParameter? {
        byType[type]?[name]
    }

    public func parameters(for type: String) -> [SearchParameter] {
        (byType[type] ?? [:]).values.sorted { $0.name < $1.name }
    }

    /// The parameters whose index rows hold a search on `name` (itself unless it is folded). A
    /// modifier's rows (`:text`, `:of-type`) follow their parameter's.
    public func stored(_ name: String, for type: String) -> [String] {
        let (base, modifier) = name.firstIndex(of: ":").map { (String(name[..<$0]), String(name[$0...])) } ?? (name, "")
        guard let parts = folded[type]?[base] else { return [name] }
        return parts.map { $0 + modifier }
    }

    /// Each parameter with more than one path that other, narrower parameters of the same kind
    /// cover exactly, with the stored parameters covering it (folded ones resolved in turn); and
    /// each parameter with exactly the paths of another whose name sorts first
    /// (`Patient.phonetic` = `name`), onto that one.
    static func folding(_ params: [String: SearchParameter]) -> [String: [String]] {
        var folded: [String: [String]] = [:]
        // Narrow ones first, so that a wide parameter folds onto already-resolved parts.
        for p in params.values.sorted(by: { ($0.paths.count, $0.name) < ($1.paths.count, $1.name) })
        where p.type != .reference && p.type != .composite && p.type != .special {
            let paths = Set(p.paths.map(\.text))
            if let same = params.values.filter({ $0.name < p.name && $0.type == p.type && Set($0.paths.map(\.text)) == paths })
                .min(by: { $0.name < $1.name }) {
                folded[p.name] = folded[same.name] ?? [same.name]
                continue
            }
            guard p.paths.count > 1 else { continue }
            let parts = params.values.filter { q in
                q.name != p.name && q.type == p.type && q.paths.count < p.paths.count && Set(q.paths.map(\.text)).isSubset(of: paths)
            }
            guard Set(parts.flatMap { $0.paths.map(\.text) }) == paths else { continue }
            folded[p.name] = Array(Set(parts.flatMap { folded[$0.name] ?? [$0.name] })).sorted()
        }
        return folded
    }

    init(schema: FHIRSchema, table: String, omitting: [String: Set<String>] = [:]) {
        var listed: [String: [String: SearchParameter]] = [:]
        var current = ""
        for line in table.split(separator: "\n") {
            if line.hasPrefix("@") { current = String(line.dropFirst()); continue }
            let parts = line.split(separator: " ")
            guard parts.count == 3, let type = SearchParameter.ParamType(rawValue: String(parts[1])) else { continue }
            listed[current, default: [:]][String(parts[0])] =
                SearchParameter(String(parts[0]), type, parts[2].split(separator: "|").map(String.init))
        }
        var result: [String: [String: SearchParameter]] = [:]
        for name in schema.resourceTypeNames {
            var params = listed[name] ?? Self.derived(name, schema: schema)
            for (k, v) in listed["*"] ?? [:] { params[k] = v }
            for k in omitting[name] ?? [] { params[k] = nil }
            result[name] = params
        }
        byType = result
        folded = result.mapValues(Self.folding).filter { !$0.value.isEmpty }
    }

    static func derived(_ name: String, schema: FHIRSchema) -> [String: SearchParameter] {
        guard let def = schema.types[name] else { return [:] }
        var params: [String: SearchParameter] = [:]
        func add(_ p: SearchParameter) { params[p.name] = p }
        let elements = Set(def.elements.map(\.baseName))
        if elements.contains("identifier") { add(SearchParameter("identifier", .token, ["identifier"])) }
        if elements.contains("status") { add(SearchParameter("status", .token, ["status"])) }
        if elements.contains("subject") {
            add(SearchParameter("subject", .reference, ["subject"]))
            add(SearchParameter("patient", .reference, ["subject{Patient}"]))
        } else if elements.contains("patient") {
            add(SearchParameter("patient", .reference, ["patient"]))
        }
        if elements.contains("encounter") { add(SearchParameter("encounter", .reference, ["encounter"])) }
        if elements.contains("code") && def.members["code"]?.type == "CodeableConcept" {
            add(SearchParameter("code", .token, ["code"]))
        }
        if elements.contains("url") && def.members["url"]?.type == "uri" { add(SearchParameter("url", .uri, ["url"])) }
        return params
    }
}
