import FHIRModel

/// Everything the matcher compares, read once from a Patient resource.
public struct PatientFeatures: Sendable, Equatable {
    public var names: [NameFeature] = []
    /// FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
    public var birthDate: String?
    public var gender: String?
    /// The resident ID number, validated (nil when absent or invalid).
    public var residentID: ResidentID?
    /// A resident ID number as written that failed validation (a typo is still evidence).
    public var invalidResidentID: String?
    /// Other identifiers of the person (not of a registration) as `system|value`: health card,
    /// medical insurance, passport, social security number (see `IdentifierSystems.identifiesPerson`).
    public var identifiers: Set<String> = []
    public var phones: Set<String> = []
    public var address: AddressFeature?
    /// The mother's resident ID, for newborns (contact with relationship mother, extension
    /// `IdentifierSystems.contactIdentifierExtension`).
    public var motherID: String?

    public init() {}

    /// Reads a Patient resource.
    public init(patient: JSONObject) {
        for name in patient["name"]?.arrayValue ?? [] {
            if name["use"]?.stringValue == "old" { continue }
            let given = (name["given"]?.arrayValue ?? []).compactMap(\.stringValue)
            if let n = NameFeature(family: name["family"]?.stringValue, given: given, text: name["text"]?.stringValue) {
                names.append(n)
            }
        }
        birthDate = patient["birthDate"]?.stringValue
        gender = patient["gender"]?.stringValue
        for identifier in patient["identifier"]?.arrayValue ?? [] {
            guard let value = identifier["value"]?.stringValue, !value.isEmpty else { continue }
            let system = identifier["system"]?.stringValue ?? ""
            if system == IdentifierSystems.residentID {
                if let id = try? ResidentID(value) { residentID = id } else { invalidResidentID = value.uppercased() }
            } else if IdentifierSystems.identifiesPerson(system: system, identifier: identifier) {
                identifiers.insert(system + "|" + value.filter { $0 != " " && $0 != "-" }.uppercased())
            }
        }
        for telecom in patient["telecom"]?.arrayValue ?? [] where telecom["system"]?.stringValue == "phone" || telecom["system"] == nil {
            if let p = telecom["value"]?.stringValue.flatMap(Self.phone) { phones.insert(p) }
        }
        if let a = patient["address"]?.arrayValue?.first(where: { $0["use"]?.stringValue != "old" })?.objectValue {
            address = AddressFeature(a)
        }
        for contact in patient["contact"]?.arrayValue ?? [] {
            let codes = (contact["relationship"]?.arrayValue ?? []).flatMap { ($0["coding"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue } }
            guard codes.contains(where: { ["MTH", "NMTH", "mother", "N"].contains($0) }) || codes.isEmpty else { continue }
            for ext in contact["extension"]?.arrayValue ?? [] where ext["url"]?.stringValue == IdentifierSystems.contactIdentifierExtension {
                if ext["valueIdentifier"]?["system"]?.stringValue == IdentifierSystems.residentID,
                   let v = ext["valueIdentifier"]?["value"]?.stringValue, let id = try? ResidentID(v) {
                    motherID = id.value
                }
            }
        }
    }

    /// Digits of a phone number; mainland numbers without the +86 / 0086 prefix. Nil when too short.
    static func phone(_ raw: String) -> String? {
        var digits = raw.filter(\.isASCIIDigit)
        if digits.hasPrefix("0086") { digits.removeFirst(4) } else if digits.hasPrefix("86") && digits.count == 13 { digits.removeFirst(2) }
        return digits.count >= 7 ? digits : nil
    }

    /// The first name that is not a newborn placeholder.
    public var primaryName: NameFeature? { names.first { !$0.isPlaceholder } }

    /// The birth year, when known.
    public var birthYear: String? { birthDate.map { String($0.prefix(4)) } }
}

/// An address as matching compares it: postal code, the city/county level, the street line with
/// its house number apart (FEBRL's street_number, a Chinese 号).
public struct AddressFeature: Sendable, Equatable {
    public var postalCode: String?
    public var city: String?
    public var state: String?
    public var street: String?
    public var houseNumber: String?

    public init(_ a: JSONObject) {
        postalCode = a["postalCode"]?.stringValue.map { $0.filter { !$0.isWhitespace } }.flatMap { $0.isEmpty ? nil : $0 }
        let district = a["district"]?.stringValue
        city = Self.folded([a["city"]?.stringValue, district].compactMap { $0 }.joined(separator: " "))
        state = Self.folded(a["state"]?.stringValue ?? "")
        let lines = (a["line"]?.arrayValue ?? []).compactMap(\.stringValue)
        var first = lines.first ?? ""
        if let number = first.split(separator: " ").first, number.allSatisfy(\.isASCIIDigit) {
            houseNumber = String(number)
            first = String(first.dropFirst(number.count))
        } else if let hao = first.lastIndex(of: "号") {
            // 人民南路四段11号: the digits before 号.
            let digits = first[..<hao].reversed().prefix { $0.isASCIIDigit }
            if !digits.isEmpty { houseNumber = String(digits.reversed()) }
        }
        street = Self.folded(([first] + lines.dropFirst()).joined(separator: " "))
    }

    static func folded(_ s: String) -> String? {
        let out = NameFeature.clean(s)
        return out.isEmpty ? nil : out
    }
}

/// The identifier systems the master patient index knows (docs/identifiers.md).
public enum IdentifierSystems {
    /// 居民身份证号码 (GB 11643-1999), OID assigned by the national health information standards.
    public static let residentID = "urn:oid:2.16.156.10011.1.3"
    /// 电子健康卡 ID (the national e-health card scheme's card ID).
    public static let healthCard = "https://huitong.health/fhir/sid/ehealth-card"
    /// `Identifier.assigner.display` of the cards the platform issued for a master Person: they
    /// stay on the Person when it is rewritten from its Patients.
    public static let cardIssuer = "Huitong e-health card issuer"
    /// 医保 medical insurance number.
    public static let medicalInsurance = "https://huitong.health/fhir/sid/medical-insurance"

    /// Identifier types (HL7 v2 table 0203) that name a person rather than one registration:
    /// national ID, social security, national health plan, passport, driver's licence, social
    /// beneficiary, health card. A facility's MRN (MR, PI) only tells registrations at that
    /// facility apart, so two MRNs never count for or against a match.
    static let personTypes: Set<String> = ["NI", "NNCHN", "SS", "NH", "PPN", "DL", "SB", "HC", "JHN"]

    /// Whether an identifier names the person (compared and used for blocking) or only a registration.
    static func identifiesPerson(system: String, identifier: JSON) -> Bool {
        if system == healthCard || system == medicalInsurance { return true }
        let codes = (identifier["type"]?["coding"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue }
        return codes.contains { personTypes.contains($0) }
    }
    /// On a `Patient.contact` (the mother of a newborn): her identifier, as `valueIdentifier`.
    public static let contactIdentifierExtension = "https://huitong.health/fhir/StructureDefinition/contact-identifier"
}
