import FHIRModel
import Foundation

/// Sensitive categories of health data (GB/T 39725-2020 level 5: mental health, HIV/STD,
/// reproductive health): records coded with one of a category's codes carry its security label
/// (`meta.security`, HL7 v3 ActCode), set by the ingest pipeline on every write. Other facilities
/// see a labelled record only if the resident's Consent opts that label in for them
/// (`Consent.provision.securityLabel`), or by breaking the glass.
///
/// The list is configurable (`huitong serve --sensitive-categories FILE`, the JSON `encoded`
/// writes); codes match by system and code prefix (`F` covers ICD-10 F00–F99).
public struct SensitiveCategories: Sendable, Codable, Equatable {
    public struct Category: Sendable, Codable, Equatable {
        /// The security label (v3 ActCode: `PSY`, `HIV`, `STD`, `SEX`, ...).
        public var label: String
        public var name: String
        public var codes: [Code]

        public init(label: String, name: String, codes: [Code]) {
            self.label = label
            self.name = name
            self.codes = codes
        }
    }

    /// A code system and a prefix of its codes.
    public struct Code: Sendable, Codable, Equatable {
        public var system: String
        public var prefix: String

        public init(_ system: String, _ prefix: String) {
            self.system = system
            self.prefix = prefix
        }
    }

    public var categories: [Category]

    public init(categories: [Category]) {
        self.categories = categories
        self.bySystem = [:]
        index()
    }

    /// Code prefixes by system, each with its label (built once; not part of the file).
    private var bySystem: [String: [(prefix: String, label: String)]]

    private mutating func index() {
        bySystem = [:]
        for category in categories {
            for code in category.codes { bySystem[code.system, default: []].append((code.prefix, category.label)) }
        }
    }

    enum CodingKeys: String, CodingKey { case categories }

    public init(from decoder: any Decoder) throws {
        self.init(categories: try decoder.container(keyedBy: CodingKeys.self).decode([Category].self, forKey: .categories))
    }

    public static func == (a: Self, b: Self) -> Bool { a.categories == b.categories }

    public static let labelSystem = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

    /// The labels of every category.
    public var labels: Set<String> { Set(categories.map(\.label)) }

    /// ICD-10 as published by WHO, as FHIR names it, and the Chinese national clinical edition
    /// (GB/T 14396, 疾病分类与代码).
    static let icd10Systems = ["http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cn", "urn:oid:2.16.156.10011.2.3.3.11"]

    static func icd10(_ prefixes: String...) -> [Code] {
        icd10Systems.flatMap { system in prefixes.map { Code(system, $0) } }
    }

    /// The built-in list: diagnoses by ICD-10 chapter blocks.
    public static let defaults = SensitiveCategories(categories: [
        Category(label: "PSY", name: "精神卫生 mental health", codes: icd10("F")),
        Category(label: "HIV", name: "艾滋病 HIV/AIDS", codes: icd10("B20", "B21", "B22", "B23", "B24", "Z21", "R75")),
        Category(label: "STD", name: "性传播疾病 sexually transmitted diseases",
                 codes: icd10("A50", "A51", "A52", "A53", "A54", "A55", "A56", "A57", "A58", "A59", "A60", "A63", "A64")),
        Category(label: "SEX", name: "生殖健康 reproductive health",
                 codes: icd10("O00", "O01", "O02", "O03", "O04", "O05", "O06", "O07", "O08", "Z30", "Z31", "N46", "N97")),
    ])

    public static func load(path: String) throws -> SensitiveCategories {
        try JSONDecoder().decode(SensitiveCategories.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The labels whose codes appear in any Coding of the resource.
    public func labels(for resource: JSONObject) -> Set<String> {
        guard !bySystem.isEmpty else { return [] }
        var found = Set<String>()
        func visit(_ value: JSON) {
            switch value {
            case .object(let o):
                if let system = o["system"]?.stringValue, let code = o["code"]?.stringValue, let prefixes = bySystem[system] {
                    for p in prefixes where code.hasPrefix(p.prefix) { found.insert(p.label) }
                }
                for (key, member) in o where key != "meta" && key != "text" { visit(member) }
            case .array(let items):
                for item in items { visit(item) }
            default:
                break
            }
        }
        visit(.object(resource))
        return found
    }

    /// The resource with a `meta.security` label for each category it is coded in (labels already
    /// there are kept; nothing changes when it is in none).
    public func labelled(_ resource: JSONObject) -> JSONObject {
        let found = labels(for: resource)
        guard !found.isEmpty else { return resource }
        var out = resource
        var meta = resource["meta"]?.objectValue ?? JSONObject()
        var security = meta["security"]?.arrayValue ?? []
        let present = Set(security.compactMap { $0["system"]?.stringValue == Self.labelSystem ? $0["code"]?.stringValue : nil })
        for label in found.subtracting(present).sorted() {
            security.append(.object(JSONObject([("system", .string(Self.labelSystem)), ("code", .string(label))])))
        }
        meta["security"] = .array(security)
        out["meta"] = .object(meta)
        return out
    }

    /// The sensitive labels a stored record carries (its `meta.security`).
    public func labels(ofStored resource: JSONObject) -> Set<String> {
        let all = labels
        return Set((resource["meta"]?["security"]?.arrayValue ?? []).compactMap { coding -> String? in
            guard coding["system"]?.stringValue == Self.labelSystem, let code = coding["code"]?.stringValue, all.contains(code) else { return nil }
            return code
        })
    }
}
