import FHIRModel
import Foundation

/// Turns one HL7 v2 message into one FHIR transaction Bundle, committed through the same ingest
/// pipeline as REST. Records are keyed by the sender's own identifiers (PID-3, PV1-19, OBR-3,
/// OBX-1 under the report), and written as conditional updates. A message sent again therefore
/// updates what it wrote and never duplicates it.
///
/// ADT A01/A04/A05/A08/A28/A31 → Patient (+ Encounter from PV1); A03 → the Encounter finished;
/// A11 → the Encounter cancelled; A13 (cancel discharge) → the Encounter in progress again, without
/// an end. ORU^R01 → one DiagnosticReport per OBR with its Observations
/// (OBX) and Specimen (SPM or OBR-15). Orders, appointments and documents: `V2ToFHIROrders.swift`.
/// Only ADT changes the registration; other messages name their patient by PID-3 and create the
/// Patient only if the facility has not registered it yet.
public struct V2ToFHIR: Sendable {
    /// The sending facility (Organization id), owner of the records and of their identifier systems.
    public let facility: String

    public init(facility: String) {
        self.facility = facility
    }

    static let residentIDSystem = "urn:oid:2.16.156.10011.1.3"
    static let v20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

    public var mrnSystem: String { "urn:huitong:mrn:" + facility }
    public var visitSystem: String { "urn:huitong:visit:" + facility }
    public var orderSystem: String { "urn:huitong:order:" + facility }
    public var resultSystem: String { "urn:huitong:result:" + facility }
    public var specimenSystem: String { "urn:huitong:specimen:" + facility }

    static let adtEvents: Set<String> = ["A01", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A31", "A40"]

    /// The message types this mapping takes (for the CapabilityStatement and the docs).
    public static let supported = ["ADT^A01", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A08", "ADT^A11", "ADT^A13", "ADT^A28", "ADT^A31", "ADT^A40", "ORU^R01",
                                   "ORM^O01", "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S26", "MDM^T02"]

    public func bundle(for m: HL7Message) throws(HL7Problem) -> JSON {
        let type = m.messageType
        var entries: [JSON] = []
        switch type.code {
        case "ADT":
            guard Self.adtEvents.contains(type.event) else {
                throw HL7Problem(.reject, "201", "ADT^\(type.event) is not supported (supported: \(Self.supported.joined(separator: ", ")))", at: ("MSH", 1, 9))
            }
            let patient = try patientEntry(m)
            if type.event == "A40" { return obj(("resourceType", "Bundle"), ("type", "transaction"), ("entry", .array(try mergeEntries(m, survivor: patient)))) }
            entries.append(patient.entry)
            if let pv1 = m["PV1"], type.event != "A28", type.event != "A31" {
                if let encounter = try encounterEntry(pv1, event: type.event, patient: patient.fullUrl) { entries.append(encounter) }
            } else if ["A01", "A03", "A04", "A05", "A11", "A13"].contains(type.event) {
                throw HL7Problem(.error, "101", "ADT^\(type.event) needs a PV1 segment", at: ("PV1", 1, 0))
            }
        case "ORU":
            guard type.event == "R01" else {
                throw HL7Problem(.reject, "201", "ORU^\(type.event) is not supported (supported: ORU^R01)", at: ("MSH", 1, 9))
            }
            // Results name the patient; they do not change the registration (ADT does).
            let patient = try patientEntry(m, createOnly: true)
            entries.append(patient.entry)
            entries += try resultEntries(m, patient: patient.fullUrl)
        case "ORM", "OML":
            guard (type.code, type.event) == ("ORM", "O01") || (type.code, type.event) == ("OML", "O21") else {
                throw HL7Problem(.reject, "201", "\(type.code)^\(type.event) is not supported (supported: ORM^O01, OML^O21)", at: ("MSH", 1, 9))
            }
            let patient = try patientEntry(m, createOnly: true)
            entries = [patient.entry] + (try orderEntries(m, patient: patient.fullUrl))
        case "SIU":
            guard ["S12", "S13", "S14", "S15", "S26"].contains(type.event) else {
                throw HL7Problem(.reject, "201", "SIU^\(type.event) is not supported (supported: S12, S13, S14, S15, S26)", at: ("MSH", 1, 9))
            }
            let patient = try patientEntry(m, createOnly: true)
            entries = [patient.entry, try appointmentEntry(m, event: type.event, patient: patient.fullUrl)]
        case "MDM":
            guard type.event == "T02" else {
                throw HL7Problem(.reject, "201", "MDM^\(type.event) is not supported (supported: MDM^T02)", at: ("MSH", 1, 9))
            }
            let patient = try patientEntry(m, createOnly: true)
            entries = [patient.entry] + (try documentEntries(m, patient: patient.fullUrl))
        case "":
            throw HL7Problem(.reject, "101", "MSH-9 (message type) is missing", at: ("MSH", 1, 9))
        default:
            throw HL7Problem(.reject, "200", "Message type \(type.code) is not supported (supported: \(Self.supported.joined(separator: ", ")))", at: ("MSH", 1, 9))
        }
        return obj(("resourceType", "Bundle"), ("type", "transaction"), ("entry", .array(entries)))
    }

    // MARK: Patient (PID)

    func patientEntry(_ m: HL7Message, createOnly: Bool = false) throws(HL7Problem) -> (entry: JSON, fullUrl: String) {
        guard let pid = m["PID"] else { throw HL7Problem(.error, "100", "The message has no PID segment", at: ("PID", 1, 0)) }
        var identifiers: [JSON] = []
        var key: (String, String)?
        for (i, cx) in pid[3].each.enumerated() {
            guard let value = cx.component(1) else { continue }
            let (system, type) = identifierSystem(cx)
            var identifier: [(String, JSON?)] = []
            if let type { identifier.append(("type", obj(("coding", .array([obj(("system", .string(Self.v20203)), ("code", .string(type)))]))))) }
            identifier += [("system", .string(system)), ("value", .string(value))]
            if type == "NNCHN" {
                guard Self.validResidentID(value) else {
                    throw HL7Problem(.error, "102", "PID-3 repetition \(i + 1): '\(value)' is not a valid resident ID number (GB 11643)", at: ("PID", 1, 3))
                }
            }
            identifiers.append(obj(identifier))
            if key == nil || (system == mrnSystem && key!.0 != mrnSystem) { key = (system, value) }
        }
        guard let key else { throw HL7Problem(.error, "101", "PID-3 (patient identifier list) is required", at: ("PID", 1, 3)) }
        var patient: [(String, JSON?)] = [("resourceType", "Patient"), ("identifier", .array(identifiers))]
        let names = pid[5].each.compactMap(humanName)
        if !names.isEmpty { patient.append(("name", .array(names))) }
        let phones = (pid[13].each + pid[14].each).compactMap(contactPoint)
        if !phones.isEmpty { patient.append(("telecom", .array(phones))) }
        if let sex = pid[8].value {
            guard let gender = HL7Tables.sex[sex] else {
                throw HL7Problem(.error, "103", "PID-8 '\(sex)' is not an HL7 table 0001 sex (M, F, O, U, A, N)", at: ("PID", 1, 8))
            }
            patient.append(("gender", .string(gender)))
        }
        if let birth = pid[7].value {
            patient.append(("birthDate", .string(try date(birth, at: ("PID", 1, 7)))))
        }
        let addresses = pid[11].each.compactMap(address)
        if !addresses.isEmpty { patient.append(("address", .array(addresses))) }
        if let died = pid[29].value {
            patient.append(("deceasedDateTime", .string(try dateTime(died, at: ("PID", 1, 29)))))
        } else if pid[30].value == "Y" {
            patient.append(("deceasedBoolean", .bool(true)))
        }
        let fullUrl = "urn:uuid:" + RandomUUID.make()
        let search = "identifier=\(query(key.0))|\(query(key.1))"
        if createOnly {
            return (entry(fullUrl, obj(patient), method: "POST", url: "Patient", ifNoneExist: search), fullUrl)
        }
        return (entry(fullUrl, obj(patient), method: "PUT", url: "Patient?" + search), fullUrl)
    }

    /// The system of a CX identifier: a resident ID number (type NNCHN or authority CHN), an
    /// authority's OID, the facility's MRNs (type MR, PI, or none), or another type of the facility.
    func identifierSystem(_ cx: HL7Field) -> (String, String?) {
        let type = cx.component(5)
        let authority = cx.component(4)
        if type == "NNCHN" || (type == nil && authority == "CHN") { return (Self.residentIDSystem, "NNCHN") }
        if let oid = cx.subcomponent(4, 2), cx.subcomponent(4, 3) == "ISO" { return ("urn:oid:" + oid, type) }
        switch type {
        case nil, "MR"?, "PI"?, "PT"?: return (mrnSystem, type ?? "MR")
        case let t?: return ("urn:huitong:id:\(facility):\(t.lowercased())", t)
        }
    }

    static func validResidentID(_ v: String) -> Bool {
        let chars = Array(v.uppercased())
        guard chars.count == 18, chars.prefix(17).allSatisfy(\.isASCIIDigit) else { return chars.count == 15 && chars.allSatisfy(\.isASCIIDigit) }
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        let sum = zip(chars.prefix(17), weights).reduce(0) { $0 + Int(String($1.0))! * $1.1 }
        return Array("10X98765432")[sum % 11] == chars[17]
    }

    func humanName(_ xpn: HL7Field) -> JSON? {
        guard let family = xpn.component(1) ?? xpn.component(2) else { return nil }
        var name: [(String, JSON?)] = []
        if let type = xpn.component(7) { name.append(("use", .string(HL7Tables.nameUse[type] ?? "usual"))) }
        name.append(("family", xpn.component(1).map(JSON.string)))
        let given = [xpn.component(2), xpn.component(3)].compactMap { $0 }
        if !given.isEmpty { name.append(("given", .array(given.map(JSON.string)))) }
        if let prefix = xpn.component(5) { name.append(("prefix", .array([.string(prefix)]))) }
        if let suffix = xpn.component(4) { name.append(("suffix", .array([.string(suffix)]))) }
        _ = family
        return obj(name)
    }

    /// XTN: the number in XTN-12 (v2.5) or XTN-1 (older), use from XTN-2, kind from XTN-3.
    func contactPoint(_ xtn: HL7Field) -> JSON? {
        guard let number = xtn.component(12) ?? xtn.component(1) else { return nil }
        let system = xtn.component(3) == "Internet" || xtn.component(3) == "X.400" ? "email" : (xtn.component(3) == "FX" ? "fax" : "phone")
        let value = system == "email" ? (xtn.component(4) ?? number) : number
        let use = HL7Tables.telecomUse[xtn.component(2) ?? ""]
        return obj(("system", .string(system)), ("value", .string(value)), ("use", use.map(JSON.string)))
    }

    func address(_ xad: HL7Field) -> JSON? {
        let line = [xad.component(1), xad.component(2)].compactMap { $0 }
        guard !line.isEmpty || xad.component(3) != nil else { return nil }
        return obj(("use", HL7Tables.addressUse[xad.component(7) ?? ""].map(JSON.string)),
                   ("line", line.isEmpty ? nil : .array(line.map(JSON.string))), ("city", xad.component(3).map(JSON.string)),
                   ("district", xad.component(9).map(JSON.string)), ("state", xad.component(4).map(JSON.string)),
                   ("postalCode", xad.component(5).map(JSON.string)), ("country", xad.component(6).map(JSON.string)))
    }

    // MARK: Encounter (PV1)

    func encounterEntry(_ pv1: HL7Segment, event: String, patient: String) throws(HL7Problem) -> JSON? {
        let classCodes = ["I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"), "E": ("EMER", "emergency"),
                          "P": ("PRENC", "pre-admission"), "R": ("AMB", "ambulatory"), "B": ("AMB", "ambulatory"), "N": ("AMB", "ambulatory")]
        let patientClass = pv1[2].value ?? "O"
        guard let (code, display) = classCodes[patientClass] else {
            throw HL7Problem(.error, "103", "PV1-2 '\(patientClass)' is not an HL7 table 0004 patient class", at: ("PV1", 1, 2))
        }
        let status: String
        switch event {
        case "A03": status = "finished"
        case "A05": status = "planned"
        case "A11": status = "cancelled"
        default: status = "in-progress"
        }
        var encounter: [(String, JSON?)] = [("resourceType", "Encounter")]
        let visit = pv1[19].value
        if let visit { encounter.append(("identifier", .array([obj(("system", .string(visitSystem)), ("value", .string(visit)))]))) }
        encounter += [("status", .string(status)),
                      ("class", obj(("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"), ("code", .string(code)), ("display", .string(display)))),
                      ("subject", obj(("reference", .string(patient))))]
        if let doctor = pv1[7].each.first, doctor.component(1) != nil || doctor.component(2) != nil {
            let name = [doctor.component(2), doctor.component(3)].compactMap { $0 }.joined()
            encounter.append(("participant", .array([obj(
                ("type", .array([obj(("coding", .array([obj(("system", "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"), ("code", "ATND"), ("display", "attender"))])))])),
                ("individual", obj(("identifier", doctor.component(1).map { obj(("system", .string("urn:huitong:practitioner:" + facility)), ("value", .string($0))) }),
                                   ("display", name.isEmpty ? nil : .string(name)))))])))
        }
        let start = try pv1[44].value.map { v throws(HL7Problem) in try dateTime(v, at: ("PV1", 1, 44)) }
        // A cancelled discharge (A13) leaves the visit open, whatever discharge time PV1-45 repeats.
        let end = event == "A13" ? nil : try pv1[45].value.map { v throws(HL7Problem) in try dateTime(v, at: ("PV1", 1, 45)) }
        if start != nil || end != nil { encounter.append(("period", obj(("start", start.map(JSON.string)), ("end", end.map(JSON.string))))) }
        let location = pv1[3]
        if let point = location.component(1) {
            let text = [point, location.component(2), location.component(3)].compactMap { $0 }.joined(separator: " ")
            let place = obj(("location", obj(("display", .string(text)))), ("status", .string(status == "finished" ? "completed" : "active")))
            encounter.append(("location", .array([place])))
        }
        encounter.append(("serviceProvider", obj(("reference", .string("Organization/" + facility)))))
        guard let visit else {
            // Without a visit number an update cannot find its Encounter: only admissions make one.
            if event == "A13" { throw HL7Problem(.error, "101", "ADT^A13 needs the visit number (PV1-19) of the discharge it cancels", at: ("PV1", 1, 19)) }
            return ["A01", "A04", "A05"].contains(event) ? entry("urn:uuid:" + RandomUUID.make(), obj(encounter), method: "POST", url: "Encounter") : nil
        }
        return entry("urn:uuid:" + RandomUUID.make(), obj(encounter), method: "PUT", url: "Encounter?identifier=\(query(visitSystem))|\(query(visit))")
    }

    /// CE/CWE: identifier^text^coding system (LN → LOINC, SCT → SNOMED CT, others as given).
    func codeableConcept(_ f: HL7Field) -> JSON? {
        guard f.component(1) != nil || f.component(2) != nil else { return nil }
        var codings: [JSON] = []
        for offset in [0, 3] {
            guard let code = f.component(1 + offset) else { continue }
            let system = f.component(3 + offset).map(Self.codingSystem)
            codings.append(obj(("system", system.map(JSON.string)), ("code", .string(code)), ("display", f.component(2 + offset).map(JSON.string))))
        }
        return obj(("coding", codings.isEmpty ? nil : .array(codings)), ("text", (f.component(2) ?? f.component(5)).map(JSON.string)))
    }

    static func codingSystem(_ name: String) -> String {
        switch name.uppercased() {
        case "LN", "LOINC": return "http://loinc.org"
        case "SCT", "SNM", "SNOMEDCT": return "http://snomed.info/sct"
        case "I10", "ICD10": return "http://hl7.org/fhir/sid/icd-10"
        case "UCUM": return "http://unitsofmeasure.org"
        default: return name.contains(":") ? name : "urn:huitong:hl7-coding:" + name
        }
    }

    /// An HL7 NM value as a FHIR decimal's text (precision kept: `5.60` stays `5.60`; `+5` → `5`,
    /// `.5` → `0.5`, `007` → `7`), or nil if it is not a number.
    static func decimal(_ text: String) -> String? {
        var t = text.trimmingSpaces()
        var sign = ""
        if t.first == "+" { t = t.dropFirst() } else if t.first == "-" { sign = "-"; t = t.dropFirst() }
        let parts = t.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard !t.isEmpty, parts.allSatisfy({ $0.allSatisfy(\.isASCIIDigit) }),
              parts.contains(where: { !$0.isEmpty }) else { return nil }
        var whole = String(parts[0].drop { $0 == "0" })
        if whole.isEmpty { whole = "0" }
        let fraction = parts.count == 2 ? String(parts[1]) : ""
        return sign + whole + (fraction.isEmpty ? "" : "." + fraction)
    }

    // MARK: dates

    /// HL7 DT (`YYYY[MM[DD]]`) → FHIR date.
    func date(_ v: String, at location: (String, Int, Int)) throws(HL7Problem) -> String {
        let digits = String(v.prefix(8))
        guard [4, 6, 8].contains(digits.count), digits.allSatisfy(\.isASCIIDigit), let parts = Self.dateParts(digits) else {
            throw HL7Problem(.error, "102", "'\(v)' is not an HL7 date (YYYY[MM[DD]])", at: location)
        }
        return parts
    }

    /// HL7 TS/DTM (`YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`) → FHIR dateTime (China time when no zone).
    func dateTime(_ v: String, at location: (String, Int, Int)) throws(HL7Problem) -> String {
        // Made only when thrown (its text is formatted; most values are good).
        var bad: HL7Problem { HL7Problem(.error, "102", "'\(v)' is not an HL7 date/time (YYYYMMDDHHMMSS[+ZZZZ])", at: location) }
        var body = Substring(v)
        var zone = "+08:00"
        if let sign = body.lastIndex(where: { $0 == "+" || $0 == "-" }) {
            let z = body[body.index(after: sign)...]
            guard z.count == 4, z.allSatisfy(\.isASCIIDigit) else { throw bad }
            zone = String(body[sign]) + z.prefix(2) + ":" + z.suffix(2)
            body = body[..<sign]
        }
        let whole = body.split(separator: ".", maxSplits: 1)
        guard let main = whole.first, main.allSatisfy(\.isASCIIDigit), [4, 6, 8, 10, 12, 14].contains(main.count),
              let day = Self.dateParts(String(main.prefix(8))) else { throw bad }
        guard main.count > 8 else { return day }
        let time = Array(main.dropFirst(8))
        let hh = Int(String(time[0..<2]))!, mm = time.count >= 4 ? Int(String(time[2..<4]))! : 0, ss = time.count >= 6 ? Int(String(time[4..<6]))! : 0
        guard hh < 24, mm < 60, ss < 60 else { throw bad }
        return day + "T" + Self.twoDigits(hh) + ":" + Self.twoDigits(mm) + ":" + Self.twoDigits(ss) + zone
    }

    func instant(_ v: String, at location: (String, Int, Int)) throws(HL7Problem) -> String {
        let t = try dateTime(v, at: location)
        guard t.contains("T") else { throw HL7Problem(.error, "102", "'\(v)' needs a time of day (YYYYMMDDHHMM[SS])", at: location) }
        return t
    }

    /// `07`, `12`: without `String(format:)`, which goes through Foundation.
    static func twoDigits(_ n: Int) -> String { n < 10 ? "0" + String(n) : String(n) }

    static func dateParts(_ d: String) -> String? {
        let y = String(d.prefix(4))
        guard d.count > 4 else { return y }
        let m = Int(d.dropFirst(4).prefix(2))!
        guard (1...12).contains(m) else { return nil }
        guard d.count > 6 else { return y + "-" + twoDigits(m) }
        let day = Int(d.dropFirst(6).prefix(2))!
        let days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        guard (1...days).contains(day) else { return nil }
        if m == 2 && day == 29, let year = Int(y), !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) { return nil }
        return y + "-" + twoDigits(m) + "-" + twoDigits(day)
    }

    // MARK: JSON

    /// A transaction entry; a conditional URL looks only among the facility's own records (another
    /// facility's registration of the same resident is not this sender's to update).
    func entry(_ fullUrl: String, _ resource: JSON, method: String, url: String, ifNoneExist: String? = nil) -> JSON {
        let own = "_source=" + query("urn:huitong:facility:" + facility)
        let scoped = url.contains("?") ? url + "&" + own : url
        return obj(("fullUrl", .string(fullUrl)), ("resource", resource),
                   ("request", obj(("method", .string(method)), ("url", .string(scoped)), ("ifNoneExist", ifNoneExist.map { .string($0 + "&" + own) }))))
    }

    func query(_ s: String) -> String {
        // Most values (identifiers, systems) need no escaping: checked on bytes, without Foundation.
        let plain = s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E || b == 0x3A
        }
        return plain ? s : (s.addingPercentEncoding(withAllowedCharacters: Self.queryAllowed) ?? s)
    }

    static let queryAllowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:"))
}

/// An object of the members that are not nil, in order.
func obj(_ members: (String, JSON?)...) -> JSON { obj(members) }

func obj(_ members: [(String, JSON?)]) -> JSON {
    .object(JSONObject(members.compactMap { k, v in v.map { (k, $0) } }))
}

extension Character {
    /// 0-9 only: `isNumber` also holds for 五, ½ and Ⅷ, and a range of Characters also takes a
    /// digit with a combining mark (`1\u{301}`); `Int(_:)` reads neither.
    var isASCIIDigit: Bool { asciiValue.map { (0x30...0x39).contains($0) } ?? false }
}
