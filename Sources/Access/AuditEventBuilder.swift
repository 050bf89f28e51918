import FHIRModel
import Foundation
import Store

/// Where a request came from, for its audit event.
public struct RequestOrigin: Sendable, Equatable {
    /// The client's network address.
    public var address: String?
    /// `X-Break-Glass-Reason`: why an emergency reader overrode a refusal.
    public var breakGlassReason: String?

    public init(address: String? = nil, breakGlassReason: String? = nil) {
        self.address = address
        self.breakGlassReason = breakGlassReason
    }

    /// Work started on the server itself (command line).
    public static let local = RequestOrigin()
}

/// How an audited interaction ended (AuditEvent.outcome: 0 success, 4 minor failure, 8 serious).
public enum AuditOutcome: Sendable, Equatable {
    case success
    /// Refused by the access decision.
    case denied(String)
}

/// One audit event as stored: a compact JSON entry (a few hundred bytes, members in a fixed order,
/// so its bytes are what the chain hashes), rendered as a FHIR R4 `AuditEvent` only when read.
/// Keeping the stored form small is what lets every read be audited before its response at a
/// cost the benchmark can bear (bench/access.py).
public enum AuditEventBuilder {
    public static func make(principal: Principal, origin: RequestOrigin, interaction: Interaction, type: String?,
                            entities: [ResourceKey], patients: [String], query: String? = nil,
                            outcome: AuditOutcome = .success, recorded: Int64) -> AuditRecord {
        // Written member by member, not through a JSONObject (built and serialized per request,
        // that cost ~2 % of an audited read's CPU).
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += #"{"t":"#.utf8
        out += String(recorded).utf8
        func key(_ key: StaticString) {
            out.append(UInt8(ascii: ","))
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            out += #"":"#.utf8
        }
        func member(_ name: StaticString, _ value: String) {
            key(name)
            JSONWriter.writeString(value, into: &out)
        }
        func member(_ name: StaticString, _ values: [String]) {
            key(name)
            out.append(UInt8(ascii: "["))
            for (n, v) in values.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.writeString(v, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        member("i", interaction.restfulCode)
        if case .operation(let name) = interaction { member("op", name) }
        member("a", interaction.auditAction)
        if let type { member("rt", type) }
        switch outcome {
        case .success: member("o", "0")
        case .denied(let reason):
            member("o", "4")
            member("od", reason)
        }
        member("k", principal.kind.rawValue)
        member("s", principal.subject)
        member("r", principal.role.rawValue)
        if let facility = principal.facility { member("f", facility) }
        if let token = principal.tokenID { member("j", token) }
        if let address = origin.address { member("ip", address) }
        if let reason = origin.breakGlassReason ?? administratorAccess(principal, interaction, patients: patients) { member("bg", reason) }
        if !patients.isEmpty { member("p", patients) }
        let others = entities.map(\.description).filter { !patients.contains($0) }
        if !others.isEmpty { member("e", others) }
        if let query { member("q", query) }
        out.append(UInt8(ascii: "}"))
        return AuditRecord(recorded: recorded, content: out, patients: patients)
    }

    /// An administrator — a person or system with the platform's every right, not the platform's
    /// own work — reading patients' records does so outside any treatment relationship: audited as
    /// broken glass (shown to the resident), with this reason.
    static func administratorAccess(_ principal: Principal, _ interaction: Interaction, patients: [String]) -> String? {
        guard principal.role == .administrator, principal.kind == .user || principal.kind == .client, !patients.isEmpty else { return nil }
        switch interaction.auditAction {
        case "R", "E": return "administrator access (管理员访问): no treatment relationship"
        default: return nil
        }
    }

    /// The FHIR R4 AuditEvent of a stored entry (DICOM/IHE style: type `rest`, subtype the RESTful
    /// interaction): who (client or user, role, facility, token, network address), what (resources,
    /// query), about whom (patients), outcome, purpose (treatment, or emergency with the
    /// break-the-glass reason). `id` is the event's place in the chain; its hash is a `meta.tag`.
    ///
    /// `redacted` (operators, who see connectivity and data quality, not clinical content): without
    /// the query text (a search names codes: `code=B20`) and the break-the-glass reason (a clinician's
    /// words about the patient); who, when, what kind of access, which records and the outcome stay.
    public static func render(_ content: [UInt8], seq: Int, hash: String, redacted: Bool = false) -> JSON {
        guard case .object(let e)? = try? JSONParser.parse(content) else {
            return .object(JSONObject([("resourceType", .string("AuditEvent")), ("id", .string(String(seq)))]))
        }
        func text(_ key: String) -> String? { e[key]?.stringValue }
        func coding(_ system: String, _ code: String, _ display: String? = nil) -> JSON {
            var o = JSONObject([("system", .string(system)), ("code", .string(code))])
            if let display { o["display"] = .string(display) }
            return .object(o)
        }
        func concept(_ codings: JSON...) -> JSON { .object(JSONObject([("coding", .array(codings))])) }
        let recorded = Int64(e["t"]?.numberText ?? "") ?? 0
        var event = JSONObject()
        event["resourceType"] = .string("AuditEvent")
        event["id"] = .string(String(seq))
        event["meta"] = .object(JSONObject([
            ("versionId", .string("1")), ("lastUpdated", .string(FHIRDateTime.formatInstant(micros: recorded))),
            ("tag", .array([coding("https://huitong.health/fhir/CodeSystem/audit-chain", hash)])),
        ]))
        event["type"] = coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation")
        var subtype = [coding("http://hl7.org/fhir/restful-interaction", text("i") ?? "operation")]
        if let op = text("op") { subtype.append(coding("https://huitong.health/fhir/CodeSystem/operation", op)) }
        if let type = text("rt") { subtype.append(coding("https://huitong.health/fhir/CodeSystem/audit-resource-type", type)) }
        event["subtype"] = .array(subtype)
        event["action"] = .string(text("a") ?? "E")
        event["recorded"] = .string(FHIRDateTime.formatInstant(micros: recorded))
        event["outcome"] = .string(text("o") ?? "0")
        if let desc = text("od") { event["outcomeDesc"] = .string(desc) }
        let reason = text("bg")
        event["purposeOfEvent"] = .array([concept(coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", reason == nil ? "TREAT" : "ETREAT"))])
        var agent = JSONObject()
        agent["type"] = concept(coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"))
        agent["role"] = .array([concept(coding("https://huitong.health/fhir/CodeSystem/role", text("r") ?? ""))])
        let subject = text("s") ?? ""
        var who = JSONObject([("identifier", .object(JSONObject([("system", .string("https://huitong.health/fhir/sid/\(text("k") ?? "")")),
                                                                 ("value", .string(subject))])))])
        if let facility = text("f") { who["display"] = .string("\(subject) @ Organization/\(facility)") }
        agent["who"] = .object(who)
        if let token = text("j") { agent["altId"] = .string(token) }
        agent["requestor"] = .bool(true)
        if let facility = text("f") { agent["location"] = .object(JSONObject([("display", .string("Organization/\(facility)"))])) }
        if let reason {
            var purpose = JSONObject([("coding", .array([coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG", "break the glass")]))])
            if !redacted { purpose["text"] = .string(reason) }
            agent["purposeOfUse"] = .array([.object(purpose)])
        }
        if let address = text("ip") {
            agent["network"] = .object(JSONObject([("address", .string(address)), ("type", .string("2"))]))
        }
        event["agent"] = .array([.object(agent)])
        event["source"] = .object(JSONObject([("observer", .object(JSONObject([("display", .string("Huitong"))]))),
                                              ("type", .array([coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]))]))
        var entities: [JSON] = []
        for p in e["p"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            entities.append(.object(JSONObject([("what", .object(JSONObject([("reference", .string(p))]))),
                                                ("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person")),
                                                ("role", coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"))])))
        }
        for other in e["e"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            entities.append(.object(JSONObject([("what", .object(JSONObject([("reference", .string(other))]))),
                                                ("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"))])))
        }
        if let query = text("q"), !redacted {
            entities.append(.object(JSONObject([("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object")),
                                                ("role", coding("http://terminology.hl7.org/CodeSystem/object-role", "24", "Query")),
                                                ("query", .string(Data(query.utf8).base64EncodedString()))])))
        }
        if !entities.isEmpty { event["entity"] = .array(entities) }
        return .object(event)
    }
}

extension Interaction {
    /// The code in http://hl7.org/fhir/restful-interaction.
    var restfulCode: String {
        switch self {
        case .read: "read"
        case .vread: "vread"
        case .history: "history-instance"
        case .search: "search-type"
        case .create, .conditionalCreate: "create"
        case .update, .conditionalUpdate: "update"
        case .patch: "patch"
        case .delete, .conditionalDelete: "delete"
        case .systemHistory: "history-system"
        case .transaction: "transaction"
        case .operation: "operation"
        }
    }

    /// AuditEvent.action: C, R, U, D or E (execute).
    var auditAction: String {
        switch self {
        case .read, .vread, .history, .systemHistory: "R"
        case .create, .conditionalCreate: "C"
        case .update, .conditionalUpdate, .patch: "U"
        case .delete, .conditionalDelete: "D"
        // "E: ... or perform a query/search operation" (http://hl7.org/fhir/audit-event-action).
        case .search, .transaction, .operation: "E"
        }
    }
}
