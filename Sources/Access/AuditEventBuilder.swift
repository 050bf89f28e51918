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

/// Builds the FHIR R4 `AuditEvent` (DICOM/IHE style: type `rest`, subtype the RESTful
/// interaction) for one interaction: who (client or user, role, facility, token, network
/// address), what (the resources and the query), about whom (patients), the outcome, and the
/// purpose (treatment, or emergency with the break-the-glass reason).
public enum AuditEventBuilder {
    public static func make(principal: Principal, origin: RequestOrigin, interaction: Interaction, type: String?,
                            entities: [ResourceKey], patients: [String], query: String? = nil,
                            outcome: AuditOutcome = .success, recorded: Int64) -> AuditRecord {
        func coding(_ system: String, _ code: String, _ display: String? = nil) -> JSON {
            var o = JSONObject([("system", .string(system)), ("code", .string(code))])
            if let display { o["display"] = .string(display) }
            return .object(o)
        }
        var event = JSONObject()
        event["resourceType"] = .string("AuditEvent")
        event["type"] = coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation")
        event["subtype"] = .array([coding("http://hl7.org/fhir/restful-interaction", interaction.restfulCode)]
                                  + (type.map { [coding("https://huitong.health/fhir/CodeSystem/audit-resource-type", $0)] } ?? []))
        event["action"] = .string(interaction.auditAction)
        event["recorded"] = .string(FHIRDateTime.formatInstant(micros: recorded))
        switch outcome {
        case .success:
            event["outcome"] = .string("0")
        case .denied(let reason):
            event["outcome"] = .string("4")
            event["outcomeDesc"] = .string(reason)
        }
        let purpose = origin.breakGlassReason == nil ? "TREAT" : "ETREAT"
        event["purposeOfEvent"] = .array([.object(JSONObject([("coding", .array([coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose)]))]))])
        var agent = JSONObject()
        agent["type"] = .object(JSONObject([("coding", .array([coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")]))]))
        agent["role"] = .array([.object(JSONObject([("coding", .array([coding("https://huitong.health/fhir/CodeSystem/role", principal.role.rawValue)]))]))])
        var who = JSONObject([("identifier", .object(JSONObject([("system", .string("https://huitong.health/fhir/sid/\(principal.kind.rawValue)")),
                                                                 ("value", .string(principal.subject))])))])
        if let facility = principal.facility { who["display"] = .string("\(principal.subject) @ Organization/\(facility)") }
        agent["who"] = .object(who)
        if let token = principal.tokenID { agent["altId"] = .string(token) }
        agent["requestor"] = .bool(true)
        if let facility = principal.facility { agent["location"] = .object(JSONObject([("display", .string("Organization/\(facility)"))])) }
        if let reason = origin.breakGlassReason {
            agent["purposeOfUse"] = .array([.object(JSONObject([("coding", .array([coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG", "break the glass")])),
                                                                ("text", .string(reason))]))])
        }
        if let address = origin.address {
            agent["network"] = .object(JSONObject([("address", .string(address)), ("type", .string(address.contains(":") || address.first?.isNumber == true ? "2" : "1"))]))
        }
        event["agent"] = .array([.object(agent)])
        event["source"] = .object(JSONObject([("observer", .object(JSONObject([("display", .string("Huitong"))]))),
                                              ("type", .array([coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]))]))
        var entityList: [JSON] = []
        for p in patients {
            entityList.append(.object(JSONObject([("what", .object(JSONObject([("reference", .string(p))]))),
                                                  ("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person")),
                                                  ("role", coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"))])))
        }
        for key in entities where !patients.contains(key.description) {
            entityList.append(.object(JSONObject([("what", .object(JSONObject([("reference", .string(key.description))]))),
                                                  ("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"))])))
        }
        if let query {
            entityList.append(.object(JSONObject([("type", coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object")),
                                                  ("role", coding("http://terminology.hl7.org/CodeSystem/object-role", "24", "Query")),
                                                  ("query", .string(Data(query.utf8).base64EncodedString()))])))
        }
        if !entityList.isEmpty { event["entity"] = .array(entityList) }
        return AuditRecord(recorded: recorded, content: JSONWriter.bytes(.object(event)), patients: patients)
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
        case .read, .vread, .history, .search, .systemHistory: "R"
        case .create, .conditionalCreate: "C"
        case .update, .conditionalUpdate, .patch: "U"
        case .delete, .conditionalDelete: "D"
        case .transaction, .operation: "E"
        }
    }
}
