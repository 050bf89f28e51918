import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// The platform's own subscription topics (ADR 023): canonical events a subscriber names by URL
/// instead of writing a search, in the topic-based form of the Subscriptions Backport IG — a
/// `Subscription` whose `criteria` is the topic's URL, narrowed by `backport-filter-criteria`
/// searches on `_criteria`. Each topic is published as an R4 `Basic` (code `SubscriptionTopic`,
/// the R5 elements as cross-version extensions), as the backport does for R4.
///
/// A trigger is R5's `queryCriteria`: a search the resource's previous version must match (a
/// create counts as `resultForCreate`), one the new version must match, and whether both must
/// hold; or, for "the status changed", a comparison of the two versions' status.
public struct SubscriptionTopic: Sendable {
    public static let base = "https://huitong.health/fhir/SubscriptionTopic/"
    static let extensionBase = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
    public static let filterCriteria = SubscriptionDefinition.backport + "backport-filter-criteria"

    public struct Trigger: Sendable {
        public let type: String
        public let interactions: Set<String>
        public let previous: String?
        public let resultForCreate: Bool
        public let current: String?
        public let requireBoth: Bool
        /// Fires when the version's `status` differs from the previous version's (and on create).
        public let statusChanged: Bool
        public let description: String

        init(_ type: String, _ description: String, interactions: Set<String> = ["create", "update"], previous: String? = nil,
             resultForCreate: Bool = true, current: String? = nil, requireBoth: Bool = true, statusChanged: Bool = false) {
            self.type = type
            self.description = description
            self.interactions = interactions
            self.previous = previous
            self.resultForCreate = resultForCreate
            self.current = current
            self.requireBoth = requireBoth
            self.statusChanged = statusChanged
        }
    }

    /// A search parameter a subscriber may narrow the topic by (`canFilterBy`).
    public struct Filter: Sendable {
        public let type: String
        public let parameter: String
        public let description: String
    }

    public let name: String
    public let title: String
    public let description: String
    public let triggers: [Trigger]
    public let filters: [Filter]

    public var url: String { Self.base + name }
    public var types: Set<String> { Set(triggers.map(\.type)) }

    public static func named(_ url: String) -> SubscriptionTopic? { all.first { $0.url == url } }

    static func patientFilters(_ type: String, _ more: [(String, String)] = []) -> [Filter] {
        [Filter(type: type, parameter: "patient", description: "The resident (Patient) the \(type) is about")]
            + more.map { Filter(type: type, parameter: $0.0, description: $0.1) }
    }

    static let encounterFilters = patientFilters("Encounter", [("class", "inpatient, outpatient, emergency …"),
                                                               ("service-provider", "The facility (Organization)")])
    static let appointmentFilters = patientFilters("Appointment", [("actor", "A participant (Practitioner, Location …)"),
                                                                   ("service-type", "The service booked")])

    public static let all: [SubscriptionTopic] = [
        SubscriptionTopic(
            name: "result-available", title: "检查检验结果可用 (result available)",
            description: "A result for a patient is new or changed: an Observation or DiagnosticReport written as final, amended or corrected.",
            triggers: [
                Trigger("Observation", "An Observation is final, amended or corrected", current: "status=final,amended,corrected", requireBoth: false),
                Trigger("DiagnosticReport", "A DiagnosticReport is final, amended or corrected", current: "status=final,amended,corrected", requireBoth: false),
            ],
            filters: patientFilters("Observation", [("code", "The result's code"), ("category", "laboratory, imaging …")])
                + patientFilters("DiagnosticReport", [("code", "The report's code"), ("category", "The report's category")])),
        SubscriptionTopic(
            name: "encounter-start", title: "就诊开始 (encounter started)",
            description: "An Encounter becomes in-progress (created so, or updated to it).",
            triggers: [Trigger("Encounter", "An Encounter becomes in-progress", previous: "status:not=in-progress", current: "status=in-progress")],
            filters: encounterFilters),
        SubscriptionTopic(
            name: "encounter-end", title: "就诊结束 (encounter ended)",
            description: "An Encounter becomes finished (created so, or updated to it).",
            triggers: [Trigger("Encounter", "An Encounter becomes finished", previous: "status:not=finished", current: "status=finished")],
            filters: encounterFilters),
        SubscriptionTopic(
            name: "document-published", title: "文档发布 (document published)",
            description: "A DocumentReference becomes current (published, or a replacement published).",
            triggers: [Trigger("DocumentReference", "A DocumentReference becomes current", previous: "status:not=current", current: "status=current")],
            filters: patientFilters("DocumentReference", [("type", "The document's type"), ("category", "The document's class"),
                                                          ("custodian", "The facility that keeps the document")])),
        SubscriptionTopic(
            name: "referral-state-changed", title: "转诊状态变更 (referral state changed)",
            description: "A referral (ServiceRequest, or the Task that carries it between facilities) is created or its status changes.",
            triggers: [
                Trigger("ServiceRequest", "A ServiceRequest is created or changes status", statusChanged: true),
                Trigger("Task", "A Task is created or changes status", statusChanged: true),
            ],
            filters: patientFilters("ServiceRequest", [("category", "The request's category (e.g. referral)"), ("requester", "Who asked"),
                                                       ("performer", "Who is asked")])
                + patientFilters("Task", [("owner", "Who is to act"), ("requester", "Who asked"), ("focus", "The ServiceRequest")])),
        SubscriptionTopic(
            name: "appointment-booked", title: "预约成功 (appointment booked)",
            description: "An Appointment becomes booked (created so, or updated to it).",
            triggers: [Trigger("Appointment", "An Appointment becomes booked", previous: "status:not=booked", current: "status=booked")],
            filters: appointmentFilters),
        SubscriptionTopic(
            name: "appointment-cancelled", title: "预约取消 (appointment cancelled)",
            description: "A booked or proposed Appointment is cancelled.",
            triggers: [Trigger("Appointment", "An Appointment becomes cancelled", previous: "status:not=cancelled", resultForCreate: false,
                               current: "status=cancelled")],
            filters: appointmentFilters),
        SubscriptionTopic(
            name: "early-warning-signal", title: "预警信号 (early-warning signal raised)",
            description: "An early-warning signal is raised: a DetectedIssue coded in the platform's early-warning code system.",
            triggers: [Trigger("DetectedIssue", "A DetectedIssue with an early-warning code is created", interactions: ["create"],
                               current: "code=https://huitong.health/fhir/CodeSystem/early-warning|", requireBoth: false)],
            filters: patientFilters("DetectedIssue", [("code", "The signal (disease or syndrome)")])),
    ]

    // MARK: The R4 Basic

    /// The topic as an R4 `Basic`, in the backport's shape (id `topic-<name>`).
    public var basic: JSONObject {
        func ext(_ name: String, _ valueName: String, _ value: JSON) -> JSON {
            .object(JSONObject([("url", .string(Self.extensionBase + name)), (valueName, value)]))
        }
        func sub(_ name: String, _ valueName: String, _ value: JSON) -> JSON {
            .object(JSONObject([("url", .string(name)), (valueName, value)]))
        }
        var extensions: [JSON] = [
            ext("url", "valueUri", .string(url)),
            ext("version", "valueString", .string("1.0.0")),
            ext("name", "valueString", .string(name)),
            ext("title", "valueString", .string(title)),
            ext("description", "valueMarkdown", .string(description)),
        ]
        for t in triggers {
            var parts: [JSON] = [sub("description", "valueMarkdown", .string(t.description)),
                                 sub("resource", "valueUri", .string("http://hl7.org/fhir/StructureDefinition/" + t.type))]
            parts += t.interactions.sorted().map { sub("supportedInteraction", "valueCode", .string($0)) }
            if t.previous != nil || t.current != nil {
                var q: [JSON] = []
                if let p = t.previous {
                    q.append(sub("previous", "valueString", .string(p)))
                    q.append(sub("resultForCreate", "valueCode", .string(t.resultForCreate ? "test-passes" : "test-fails")))
                }
                if let c = t.current {
                    q.append(sub("current", "valueString", .string(c)))
                    q.append(sub("resultForDelete", "valueCode", .string("test-fails")))
                }
                q.append(sub("requireBoth", "valueBoolean", .bool(t.requireBoth)))
                parts.append(.object(JSONObject([("url", .string("queryCriteria")), ("extension", .array(q))])))
            }
            if t.statusChanged {
                parts.append(sub("fhirPathCriteria", "valueString", .string("%previous.empty() or (%previous.status != %current.status)")))
            }
            extensions.append(.object(JSONObject([("url", .string(Self.extensionBase + "resourceTrigger")), ("extension", .array(parts))])))
        }
        for f in filters {
            extensions.append(.object(JSONObject([("url", .string(Self.extensionBase + "canFilterBy")), ("extension", .array([
                sub("description", "valueMarkdown", .string(f.description)),
                sub("resource", "valueUri", .string(f.type)),
                sub("filterParameter", "valueString", .string(f.parameter)),
            ]))])))
        }
        for type in triggers.map(\.type) {
            extensions.append(.object(JSONObject([("url", .string(Self.extensionBase + "notificationShape")), ("extension", .array([
                sub("resource", "valueUri", .string(type)),
            ]))])))
        }
        return JSONObject([
            ("resourceType", .string("Basic")),
            ("id", .string("topic-" + name)),
            ("extension", .array(extensions)),
            ("modifierExtension", .array([ext("status", "valueCode", .string("active"))])),
            ("code", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string("http://hl7.org/fhir/fhir-types")),
                                                                               ("code", .string("SubscriptionTopic"))]))]))]))),
        ])
    }

    /// Stores each topic's `Basic` where it is missing or differs (at start; every node may do it).
    public static func publish(service: FHIRService) async throws {
        let platform = service.publishing()
        for topic in all {
            let key = ResourceKey("Basic", "topic-" + topic.name)
            var wanted = topic.basic
            if let record = try await platform.store.read(key), !record.deleted, let content = record.content,
               case .object(var stored) = try JSONParser.parse(Array(content.readableBytesView)) {
                stored["meta"] = nil
                wanted["meta"] = nil
                if JSONWriter.string(.object(stored)) == JSONWriter.string(.object(wanted)) { continue }
            }
            _ = try await platform.writePipeline.write([.generated(topic.basic, key: key, method: "PUT", ifMatch: nil, validate: true)],
                                                       as: .operation("subscription-topics"))
        }
    }
}
