import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// What the ordering clinician decides about a recognisable result (ADR 024): recognised, or a
/// re-test for one of the six situations of 国卫医发〔2022〕6号 — or for two local reasons that are
/// not refusals (the patient did not bring the result / the platform had no images; continuous
/// monitoring). Recorded as a `Task` (code `decision` in `RecognizableResults.outcomeSystem`,
/// `focus` the order, `input` the prior result, `statusReason` the decision), checked on write.
public enum RecognitionDecision: String, Sendable, CaseIterable {
    case recognised
    case conditionChanged = "condition-changed"
    case rapidChange = "rapid-change"
    case majorTreatment = "major-treatment"
    case emergency
    case forensic
    case otherNeeded = "other-needed"
    case notAvailable = "not-available"
    case continuousMonitoring = "continuous-monitoring"

    public static let system = "https://huitong.health/fhir/CodeSystem/recognition-decision"
    public static let taskCode = "decision"

    /// A re-test counted as a refusal to recognise (the six national situations).
    public var isRefusal: Bool { ![.recognised, .notAvailable, .continuousMonitoring].contains(self) }

    public var display: String {
        switch self {
        case .recognised: "结果互认 (recognised)"
        case .conditionChanged: "因病情变化，结果与临床表现不符 (condition changed)"
        case .rapidChange: "结果在疾病演变中变化较快 (changes fast as the disease evolves)"
        case .majorTreatment: "对重大诊疗措施意义重大，如手术、输血前 (before major treatment)"
        case .emergency: "急诊、急救等抢救生命的紧急状态 (emergency or resuscitation)"
        case .forensic: "涉及司法、伤残及病休等鉴定 (forensic, disability or sick-leave assessment)"
        case .otherNeeded: "其他情形确需复查 (other cases where re-testing is needed)"
        case .notAvailable: "患者未携带结果或平台无影像 (result or images not available; not a refusal)"
        case .continuousMonitoring: "连续监测 (continuous monitoring; not a refusal)"
        }
    }

    /// The decision codes as a CodeSystem (published at start; property `refusal`).
    public static var codeSystem: JSONObject {
        JSONObject([
            ("resourceType", .string("CodeSystem")), ("id", .string("recognition-decision")), ("url", .string(system)),
            ("name", .string("RecognitionDecision")), ("title", .string("检查检验结果互认决定 (recognition decisions)")),
            ("status", .string("active")), ("content", .string("complete")), ("caseSensitive", .bool(true)),
            ("property", .array([.object(JSONObject([("code", .string("refusal")), ("type", .string("boolean")),
                                                     ("description", .string("A re-test counted as a refusal to recognise"))]))])),
            ("concept", .array(allCases.map { d in
                .object(JSONObject([("code", .string(d.rawValue)), ("display", .string(d.display)),
                                    ("property", .array([.object(JSONObject([("code", .string("refusal")), ("valueBoolean", .bool(d.isRefusal))]))]))]))
            })),
        ])
    }

    /// Stores the decision CodeSystem where it is missing or differs.
    public static func publish(service: FHIRService) async throws {
        let platform = service.publishing()
        let key = ResourceKey("CodeSystem", "recognition-decision")
        var wanted = codeSystem
        if let record = try await platform.store.read(key), !record.deleted, let content = record.content,
           case .object(var stored) = try JSONParser.parse(Array(content.readableBytesView)) {
            stored["meta"] = nil
            wanted["meta"] = nil
            if JSONWriter.string(.object(stored)) == JSONWriter.string(.object(wanted)) { return }
        }
        _ = try await platform.writePipeline.write([.generated(codeSystem, key: key, method: "PUT", validate: true)],
                                                   as: .operation("recognition-codes"))
    }

    /// The decision a Task records (nil: not a decision Task).
    static func of(_ task: JSONObject) -> RecognitionDecision? {
        task["statusReason"]?["coding"]?.arrayValue?.lazy
            .compactMap { $0["system"]?.stringValue == system ? $0["code"]?.stringValue.flatMap(RecognitionDecision.init) : nil }.first
    }

    static func isDecisionTask(_ task: JSONObject) -> Bool {
        task["code"]?["coding"]?.arrayValue?.contains {
            $0["system"]?.stringValue == RecognizableResults.outcomeSystem && $0["code"]?.stringValue == taskCode
        } ?? false
    }
}

/// Checks a decision Task on write: a decision code, the order it is about, the prior result when
/// recognised; fills `for` (the order's patient) and `authoredOn`.
public struct RecognitionDecisionWrites: WriteEnricher {
    let store: any ResourceStore

    public init(store: any ResourceStore) {
        self.store = store
    }

    /// A decision's order.
    public func reads(preparing type: String) -> Set<String>? {
        type == "Task" ? ["ServiceRequest"] : []
    }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        guard type == "Task", RecognitionDecision.isDecisionTask(resource) else { return resource }
        var o = resource
        guard let decision = RecognitionDecision.of(o) else {
            throw FHIRError(.invalid, code: "code-invalid", "A recognition decision names its decision in statusReason (\(RecognitionDecision.system): "
                            + RecognitionDecision.allCases.map(\.rawValue).joined(separator: ", ") + ")", at: "Task.statusReason")
        }
        // The order is the writer's own facility's (the same answer whether another facility's
        // order exists or not).
        guard let focus = o["focus"]?["reference"]?.stringValue, focus.hasPrefix("ServiceRequest/"),
              let order = try await store.read(ResourceKey("ServiceRequest", String(focus.dropFirst("ServiceRequest/".count)))), !order.deleted,
              let content = order.content, case .object(let request) = try JSONParser.parse(Array(content.readableBytesView)),
              principal.facility == nil || FHIRService.sourceFacility(of: request) == principal.facility else {
            throw FHIRError(.invalid, code: "required", "A recognition decision's focus is the ServiceRequest (the order of the writer's facility) it decides",
                            at: "Task.focus")
        }
        let prior = (o["input"]?.arrayValue ?? []).compactMap { $0["valueReference"]?["reference"]?.stringValue }
        if decision == .recognised && prior.isEmpty {
            throw FHIRError(.invalid, code: "required", "A recognised result is named in input (valueReference to the prior result)", at: "Task.input")
        }
        if o["for"] == nil, let subject = request["subject"] { o["for"] = subject }
        if o["authoredOn"] == nil { o["authoredOn"] = .string(FHIRDateTime.formatInstant(micros: Int64(Date().timeIntervalSince1970 * 1_000_000))) }
        return o
    }
}
