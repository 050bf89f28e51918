import Access
import FHIRModel
import Foundation
import Platform
import Store

/// The duplicate-test reminder (重复检查检验提醒, WS/T 790 part 18; ADR 024): when a facility orders
/// a catalogue item (a `ServiceRequest` is created) and a result it may recognise exists, the same
/// write unit gets a `DetectedIssue` implicating the order and the prior results, and a reminder
/// `Communication` to the orderer (the `requester`); the writer is told at once — a warning in the
/// OperationOutcome it gets with `Prefer: return=OperationOutcome`. The order itself is never
/// refused for it: the clinician decides.
public struct DuplicateTestCheck: WriteEnricher {
    public static let issueCode = "duplicate-test"
    static let reminderSystem = "https://huitong.health/fhir/CodeSystem/reminder-type"

    /// Judges on the writer's behalf (a service without this check).
    let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        resource
    }

    /// An order looks for recognisable results as its writer would (results, consents, the
    /// master index: anything); nothing else is read.
    public func reads(preparing type: String) -> Set<String>? {
        type == "ServiceRequest" ? nil : []
    }

    public func companions(for write: PreparedWrite, principal: Principal) async throws -> Companions {
        guard write.key.type == "ServiceRequest", write.action == .create, let facility = principal.facility, let o = write.resource,
              ["active", "draft"].contains(o["status"]?.stringValue ?? ""),
              let subject = o["subject"]?["reference"]?.stringValue, subject.hasPrefix("Patient/") else { return .none }
        let catalogue = try await RecognitionCatalogue.stored(in: service.store)
        guard let item = catalogue.item(in: o["code"]) else { return .none }
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let recognisable: [RecognizableResults.Judged]
        do {
            recognisable = try await RecognizableResults(service: service.acting(as: principal))
                .judge(patient: String(subject.dropFirst("Patient/".count)), item: item, now: now).filter { $0.reason == nil }
        } catch {
            return .none   // nothing to judge (an unknown patient, a failure): the order stands as written
        }
        guard !recognisable.isEmpty else { return .none }
        let order = "ServiceRequest/\(write.key.id)"
        let results = recognisable.map { "\($0.record.key.type)/\($0.record.key.id)" }
        let listed = zip(results, recognisable).map { "\($0.0) (HR-\($0.1.scope?.rawValue ?? ""), \($0.1.daysLeft ?? 0) d)" }.joined(separator: ", ")
        let zh = "重复检查检验提醒：\(item.display) 已有可互认结果 \(listed)，请评估是否互认（国卫医发〔2022〕6号）。"
        let en = "\(item.display) has a result this facility may recognise: \(listed)."
        let when = FHIRDateTime.formatInstant(micros: now)
        // Whoever may read these may read what they name: they carry the ordering facility and the
        // security labels of the order and of every result they implicate (a sensitive result's
        // label keeps them from a facility without the resident's opt-in).
        var labels: [JSON] = []
        for label in (o["meta"]?["security"]?.arrayValue ?? []) + recognisable.flatMap({ $0.resource["meta"]?["security"]?.arrayValue ?? [] })
        where !labels.contains(label) { labels.append(label) }
        var meta = JSONObject([("source", .string(FHIRService.facilitySource(facility)))])
        if !labels.isEmpty { meta["security"] = .array(labels) }
        let issueKey = ResourceKey("DetectedIssue", IngestPipeline.newID())
        let issue = JSONObject([
            ("resourceType", .string("DetectedIssue")), ("id", .string(issueKey.id)), ("meta", .object(meta)),
            ("status", .string("preliminary")),
            ("code", .object(JSONObject([("coding", .array([.object(JSONObject([
                ("system", .string(RecognizableResults.outcomeSystem)), ("code", .string(Self.issueCode)),
                ("display", .string("重复检查检验（有可互认结果）"))]))])), ("text", .string("Duplicate test: a recognisable result exists"))]))),
            ("severity", .string("moderate")),
            ("patient", .object(JSONObject([("reference", .string(subject))]))),
            ("identifiedDateTime", .string(when)),
            ("implicated", .array(([order] + results).map { .object(JSONObject([("reference", .string($0))])) })),
            ("detail", .string(zh + " " + en)),
        ])
        var writes: [WriteRequest] = [.generated(issue, key: issueKey, method: "POST", validate: true)]
        if let requester = o["requester"]?["reference"]?.stringValue {
            let key = ResourceKey("Communication", IngestPipeline.newID())
            writes.append(.generated(JSONObject([
                ("resourceType", .string("Communication")), ("id", .string(key.id)), ("meta", .object(meta)),
                ("status", .string("in-progress")),
                ("category", .array([.object(JSONObject([("coding", .array([.object(JSONObject([
                    ("system", .string(Self.reminderSystem)), ("code", .string(Self.issueCode))]))]))]))])),
                ("priority", .string("urgent")),
                ("subject", .object(JSONObject([("reference", .string(subject))]))),
                ("about", .array([order, issueKey.description].map { .object(JSONObject([("reference", .string($0))])) })),
                ("sent", .string(when)),
                ("recipient", .array([.object(JSONObject([("reference", .string(requester))]))])),
                ("payload", .array([zh, en].map { .object(JSONObject([("contentString", .string($0))])) })),
            ]), key: key, method: "POST", validate: true))
        }
        return Companions(writes: writes, warnings: [Issue(.warning, code: "business-rule", zh + " " + en + " (\(issueKey))", at: "ServiceRequest.code")])
    }
}
