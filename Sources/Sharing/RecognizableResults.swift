import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Platform
import Store

/// `Patient/[id]/$recognizable-results` (ADR 024): for a resident and a catalogue item, the prior
/// results anywhere in the region that the calling (ordering) facility may recognise — HR-marked
/// at a scope that covers it, inside the item's validity window counted from the result's
/// effective time — found through the resident's master identity and searched on the caller's
/// behalf, so consent, sensitive categories and the treatment relationship decide what it sees.
/// Near misses the caller may read come as `outcome` entries with their reason (`expired`,
/// `not-hr`, `out-of-scope`); of results it may not read, nothing.
public struct RecognizableResults: Sendable {
    public static let outcomeSystem = "https://huitong.health/fhir/CodeSystem/recognition-outcome"
    public static let scopeExtension = "https://huitong.health/fhir/StructureDefinition/recognition-scope"
    public static let daysLeftExtension = "https://huitong.health/fhir/StructureDefinition/recognition-days-left"
    static let day: Int64 = 24 * 3600 * 1_000_000
    static let maxResults = 1000

    let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    /// One prior result judged for the ordering facility.
    public struct Judged: Sendable {
        public let record: ResourceRecord
        public let resource: JSONObject
        public let effective: Int64?
        /// nil: recognisable.
        public let reason: String?
        public let scope: RecognitionScope?
        public let daysLeft: Int?
    }

    /// The item a `code=system|code` names, or a ServiceRequest's code.
    public func item(code text: String?, serviceRequest: JSON?, catalogue: RecognitionCatalogue) throws -> RecognitionItem {
        if let text {
            let parts = text.split(separator: "|", maxSplits: 1).map(String.init)
            guard parts.count == 2, let item = catalogue.item(system: parts[0], code: parts[1]) else {
                throw FHIRError(.invalid, code: "value", "'\(text)' is not an item of the recognition catalogue (system|code)", at: "code")
            }
            return item
        }
        if let request = serviceRequest, request["resourceType"]?.stringValue == "ServiceRequest" {
            guard let item = catalogue.item(in: request["code"]) else {
                throw FHIRError(.invalid, code: "value", "The ServiceRequest's code names no item of the recognition catalogue", at: "ServiceRequest.code")
            }
            return item
        }
        throw FHIRError(.invalid, code: "required", "Name the item: code=<system>|<code>, or POST the ServiceRequest", at: "code")
    }

    public func judge(patient id: String, item: RecognitionItem, now: Int64) async throws -> [Judged] {
        guard let ordering = service.principal.facility else {
            throw FHIRError(.invalid, code: "required", "Recognition is decided for an ordering facility: call as a facility's client or user")
        }
        let key = ResourceKey("Patient", id)
        guard let patient = try await service.store.read(key), !patient.deleted else { throw FHIRError.notFound(key) }
        var patients = [id]
        if let linked = try await service.masterIndex?.linkedRecords(of: key) { patients = linked.patients.map(\.id) }
        var searches = SearchService(store: service.store)
        searches.masterIndex = service.masterIndex
        searches.protection = service.pipeline.protection
        searches = searches.acting(as: service.principal)
        var judged: [Judged] = []
        var places: [String: Place] = [:]
        func place(_ facility: String) async throws -> Place {
            if let known = places[facility] { return known }
            let p = try await Place.of(facility, store: service.store)
            places[facility] = p
            return p
        }
        let here = try await place(ordering)
        let references = patients.map { "Patient/" + $0 }.joined(separator: ",")
        // An imaging item may also be an ImagingStudy (its procedureCode: R4 has no search parameter
        // for it, so the resident's few studies are read and matched here).
        let types = ["Observation", "DiagnosticReport"] + (item.category == .imaging ? ["ImagingStudy"] : [])
        for type in types where service.mayRead(type) {
            let query = type == "ImagingStudy" ? "patient=\(references)&_count=200"
                : "patient=\(references)&code=\(item.system)|\(item.code)&_count=200"
            var parsed = try searches.parse(type: type, query: query, strict: true)
            while judged.count < Self.maxResults {
                let result = try await searches.run(parsed)
                for record in result.matches {
                    guard let content = record.content, case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)) else { continue }
                    if type == "ImagingStudy", !(o["procedureCode"]?.arrayValue ?? []).contains(where: { concept in
                        (concept["coding"]?.arrayValue ?? []).contains { $0["system"]?.stringValue == item.system && $0["code"]?.stringValue == item.code }
                    }) { continue }
                    // A time in the future counts as now: a window never grows past the item's.
                    let effective = RecognitionMarks.effective(o, type: type).map { min($0, now) }
                    let scope = RecognitionMarks.markedScope(o)
                    let daysLeft = effective.map { item.validityDays - Int((now - $0) / Self.day) }
                    var reason: String?
                    if scope == nil {
                        reason = "not-hr"
                    } else if daysLeft == nil || daysLeft! < 0 {
                        reason = "expired"
                    } else if let producer = FHIRService.sourceFacility(of: o), producer != ordering,
                              !(try await place(producer)).covered(by: scope!, for: here) {
                        reason = "out-of-scope"
                    } else if FHIRService.sourceFacility(of: o) == nil {
                        reason = "out-of-scope"   // no producing facility: nothing to recognise
                    }
                    judged.append(Judged(record: record, resource: o, effective: effective, reason: reason, scope: scope, daysLeft: daysLeft))
                }
                guard let next = result.next else { break }
                parsed.page = next
            }
        }
        return judged.sorted { ($0.effective ?? 0) > ($1.effective ?? 0) }
    }

    /// The searchset Bundle: recognisable results as `match` entries (with their scope and days
    /// left), near misses as `outcome` entries naming the result and the reason.
    public func bundle(_ judged: [Judged], base: String, item: RecognitionItem) -> JSON {
        var entries: [JSON] = []
        for j in judged where j.reason == nil {
            entries.append(.object(JSONObject([
                ("fullUrl", .string("\(base)/\(j.record.key.type)/\(j.record.key.id)")),
                ("resource", .object(j.resource)),
                ("search", .object(JSONObject([
                    ("extension", .array([
                        .object(JSONObject([("url", .string(Self.scopeExtension)), ("valueCode", .string(j.scope!.rawValue))])),
                        .object(JSONObject([("url", .string(Self.daysLeftExtension)), ("valueInteger", .number(String(j.daysLeft ?? 0)))])),
                    ])),
                    ("mode", .string("match")),
                ]))),
            ])))
        }
        for j in judged {
            guard let reason = j.reason else { continue }
            let reference = "\(j.record.key.type)/\(j.record.key.id)"
            let text: String
            switch reason {
            case "expired": text = "\(reference) is past the \(item.validityDays)-day window of \(item.display) (超过互认有效期)"
            case "not-hr": text = "\(reference) carries no HR mark: its facility had no QC pass for \(item.display) when it was done (非互认结果)"
            default: text = "\(reference) is HR-marked at a scope (\(j.scope?.rawValue ?? "none")) that does not reach this facility (超出互认范围)"
            }
            let id = UUID().uuidString.lowercased()
            entries.append(.object(JSONObject([
                ("fullUrl", .string("urn:uuid:" + id)),
                ("resource", .object(JSONObject([
                    ("resourceType", .string("OperationOutcome")), ("id", .string(id)),
                    ("issue", .array([.object(JSONObject([
                        ("severity", .string("information")), ("code", .string("informational")),
                        ("details", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(Self.outcomeSystem)),
                                                                                               ("code", .string(reason))]))])),
                                                        ("text", .string(text))]))),
                        ("diagnostics", .string(reference)),
                    ]))])),
                ]))),
                ("search", .object(JSONObject([("mode", .string("outcome"))]))),
            ])))
        }
        return .object(JSONObject([
            ("resourceType", .string("Bundle")), ("id", .string(UUID().uuidString.lowercased())),
            ("type", .string("searchset")),
            ("total", .number(String(judged.filter { $0.reason == nil }.count))),
            ("entry", .array(entries)),
        ]))
    }
}

/// Where a facility is, as far as recognition scopes need: its Organization's city and province
/// (`address.city`, `address.state`).
struct Place: Sendable {
    let facility: String
    let city: String?
    let province: String?

    static func of(_ facility: String, store: any ResourceStore) async throws -> Place {
        guard let record = try await store.read(ResourceKey("Organization", facility)), !record.deleted, let content = record.content,
              case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)),
              let address = o["address"]?.arrayValue?.first else { return Place(facility: facility, city: nil, province: nil) }
        func text(_ name: String) -> String? { address[name]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } }
        return Place(facility: facility, city: text("city"), province: text("state"))
    }

    /// Whether a result made here and marked at `scope` reaches the ordering facility: the
    /// region's and the nation's reach every facility of this platform; a province's, the
    /// facilities of the same province; a city's, those of the same city (both known).
    func covered(by scope: RecognitionScope, for ordering: Place) -> Bool {
        if facility == ordering.facility { return true }
        switch scope {
        case .national, .region: return true
        case .province: return province != nil && province == ordering.province
        case .city: return city != nil && city == ordering.city && province == ordering.province
        }
    }
}

extension OperationRegistry {
    public mutating func registerSharing() {
        register(.recognizableResults)
        register(.recognitionStatistics)
        register(.recordSummary)
        register(.loadCatalogue)
        register(.loadQC)
        register(.qcPasses)
    }
}

extension RegisteredOperation {
    static let recognizableResults = RegisteredOperation(
        name: "recognizable-results", resourceTypes: ["Patient"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "Recognisable prior results (检查检验结果互认)",
        documentation: "The resident's prior results anywhere in the region that the calling facility may recognise for a catalogue item "
            + "(HR-marked at a scope covering it, inside the item's validity window), as match entries with the scope and days left; "
            + "near misses the caller may read as outcome entries with the reason (expired, not-hr, out-of-scope).",
        parameters: [Parameter("code", .in, type: "token", "The catalogue item: <system>|<code> (or POST a ServiceRequest)"),
                     Parameter("return", .out, min: 1, type: "Bundle", "A searchset Bundle")],
        definition: nil,
        access: { _ in (.read, "Patient") },
        handler: { service, request in
            guard let id = request.id else {
                throw FHIRError(.invalid, code: "required", "Ask it of a resident: Patient/[id]/$recognizable-results")
            }
            let operation = RecognizableResults(service: service)
            let catalogue = try await RecognitionCatalogue.stored(in: service.store)
            let item = try operation.item(code: request.parameter("code"), serviceRequest: request.body, catalogue: catalogue)
            let judged = try await operation.judge(patient: id, item: item, now: Int64(Date().timeIntervalSince1970 * 1_000_000))
            return .resource(operation.bundle(judged, base: request.baseURL, item: item))
        })
}
