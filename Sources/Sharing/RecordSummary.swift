import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Platform
import Store

/// `Person/[id]/$record-summary` and `Patient/[id]/$record-summary` (调阅, issue 29): a resident's
/// records at every facility, grouped by facility and by month — what a clinician's cross-facility
/// viewer draws. The records are those `Person/[id]/$everything` gives the caller (treatment
/// relationship, consent, sensitive categories, break-glass: the one access decision), read in
/// pages and audited the same way; only clinical types are summarised. A Parameters resource:
/// per facility its organization, first and last times, counts per type, and per month its records
/// (reference with a display, type, clinical time), newest first.
public struct RecordSummary: Sendable {
    let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    /// The types a clinician looks at across facilities.
    static let types = ["Encounter", "Condition", "DiagnosticReport", "Observation", "DocumentReference", "ImagingStudy",
                        "MedicationRequest", "MedicationStatement", "AllergyIntolerance", "Procedure", "Immunization", "ServiceRequest"]
    /// At most about this many records are read, in storage order; the answer says when it stopped short.
    static let maxRecords = 20_000

    struct Item {
        var key: ResourceKey
        var display: String?
        var time: String?
        var facility: String
    }

    public func run(person: String) async throws -> JSON {
        let patients = try await MasterIndexOperations(service: service).patients(ofPerson: person)
        let everything = PatientEverything(service: service)
        var page = PageRequest(count: 1000)
        var items: [Item] = []
        var truncated = false
        while true {
            let result = try await everything.run(person: person, patients: patients, types: Self.types, since: nil, page: page)
            for record in result.records where Self.types.contains(record.key.type) {
                guard let content = record.content, case .object(let o)? = try? JSONParser.parse(content.readableBytesView) else { continue }
                items.append(Item(key: record.key, display: Self.display(o), time: Self.clinicalTime(o, type: record.key.type),
                                  facility: FHIRService.sourceFacility(of: o) ?? ""))
            }
            guard let next = result.next else { break }
            if items.count >= Self.maxRecords { truncated = true; break }
            page = next
        }
        return Self.parameters(person: person, items: items, truncated: truncated)
    }

    static func parameters(person: String, items: [Item], truncated: Bool) -> JSON {
        func reference(_ ref: String, _ display: String?) -> JSON {
            .object(JSONObject([("reference", .string(ref))] + (display.map { [("display", JSON.string($0))] } ?? [])))
        }
        func param(_ name: String, _ valueKey: String, _ value: JSON) -> JSON {
            .object(JSONObject([("name", .string(name)), (valueKey, value)]))
        }
        func group(_ name: String, _ parts: [JSON]) -> JSON {
            .object(JSONObject([("name", .string(name)), ("part", .array(parts))]))
        }
        var out: [JSON] = [param("person", "valueReference", reference("Person/\(person)", nil))]
        let byFacility = Dictionary(grouping: items, by: \.facility)
        // Facilities with the newest activity first.
        let facilities = byFacility.keys.sorted {
            let a = byFacility[$0]!.compactMap(\.time).max() ?? "", b = byFacility[$1]!.compactMap(\.time).max() ?? ""
            return a != b ? a > b : $0 < $1
        }
        for facility in facilities {
            let records = byFacility[facility]!.sorted { ($0.time ?? "") != ($1.time ?? "") ? ($0.time ?? "") > ($1.time ?? "") : $0.key.description < $1.key.description }
            var parts: [JSON] = []
            if !facility.isEmpty { parts.append(param("organization", "valueReference", reference("Organization/\(facility)", nil))) }
            let times = records.compactMap(\.time)
            if let first = times.min() { parts.append(param("first", "valueDateTime", .string(first))) }
            if let last = times.max() { parts.append(param("last", "valueDateTime", .string(last))) }
            for (type, n) in Dictionary(grouping: records, by: \.key.type).mapValues(\.count).sorted(by: { $0.key < $1.key }) {
                parts.append(group("count", [param("type", "valueCode", .string(type)), param("total", "valueInteger", .number(String(n)))]))
            }
            let byMonth = Dictionary(grouping: records) { $0.time.map { String($0.prefix(7)) } ?? "unknown" }
            for month in byMonth.keys.sorted(by: >) {
                var monthParts: [JSON] = [param("month", "valueString", .string(month))]
                for item in byMonth[month]! {
                    var recordParts: [JSON] = [param("reference", "valueReference", reference(item.key.description, item.display)),
                                               param("type", "valueCode", .string(item.key.type))]
                    if let time = item.time { recordParts.append(param("time", "valueDateTime", .string(time))) }
                    monthParts.append(group("record", recordParts))
                }
                parts.append(group("period", monthParts))
            }
            out.append(group("facility", parts))
        }
        if truncated {
            out.append(param("truncated", "valueBoolean", .bool(true)))
        }
        return .object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array(out))]))
    }

    /// When the record happened, as the clinician counts time (not when it was stored).
    static func clinicalTime(_ o: JSONObject, type: String) -> String? {
        let candidates: [JSON?] = [
            o["effectiveDateTime"], o["effectivePeriod"]?["start"], o["period"]?["start"], o["onsetDateTime"], o["onsetPeriod"]?["start"],
            o["performedDateTime"], o["performedPeriod"]?["start"], o["occurrenceDateTime"], o["started"], o["authoredOn"],
            o["recordedDate"], o["recorded"], o["issued"], o["date"], o["effectivePeriod"]?["end"],
        ]
        for case let value? in candidates { if let s = value.stringValue { return s } }
        return nil
    }

    /// A short label: the code's text or first display, else the type's, else the description.
    static func display(_ o: JSONObject) -> String? {
        for concept in [o["code"], o["medicationCodeableConcept"], o["vaccineCode"], o["type"]?.arrayValue?.first ?? o["type"], o["class"]] {
            guard let concept else { continue }
            if let text = concept["text"]?.stringValue { return text }
            if let display = concept["coding"]?.arrayValue?.first(where: { $0["display"] != nil })?["display"]?.stringValue { return display }
            if let display = concept["display"]?.stringValue { return display }
            if let code = concept["coding"]?.arrayValue?.first?["code"]?.stringValue { return code }
        }
        return o["description"]?.stringValue
    }
}

extension RegisteredOperation {
    static let recordSummary = RegisteredOperation(
        name: "record-summary", resourceTypes: ["Person", "Patient"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "A resident's records across facilities (调阅)",
        documentation: "The resident's records at every facility (through the master Person; from a Patient, its Person's), grouped by "
            + "facility and month with counts per type and each record's reference, type and clinical time, newest first; only what "
            + "the caller may read, audited as $everything.",
        parameters: [Parameter("return", .out, min: 1, type: "Parameters",
                               "person; per facility: organization, first, last, count (type, total), period (month, record (reference, type, time)); truncated")],
        definition: nil,
        access: { _ in (.operation("everything"), "Person") },
        handler: { service, request in
            guard let id = request.id else { throw FHIRError(.invalid, code: "required", "Ask it of a Person or a Patient") }
            var person = id
            if request.type == "Patient" {
                // The Patient as the caller may read it (the access decision; refused or not found as a read).
                _ = try await service.read("Patient", id)
                guard let linked = try await service.masterIndex?.linkedRecords(of: ResourceKey("Patient", id)) else {
                    throw FHIRError(.notFound, code: "not-found", "Patient/\(id) is linked to no master Person")
                }
                person = linked.person.id
            }
            return .resource(try await RecordSummary(service: service).run(person: person))
        })
}
