import Access
import FHIRModel
import Foundation
import Platform
import Store

/// The region's recognition lists managed on a running server. While a server runs, the embedded
/// store is its own and `huitong sharing load-catalogue` / `load-qc` cannot open it; these take
/// the same CSV files, with the same checks (every bad row reported by its line, nothing loaded),
/// and are idempotent the same way. Administrators only (术语注册: the region's reference data).
/// Loads are audited; the stamping sees them within `RecognitionMarks.ttl` (2 s).
///
///     POST [base]/$load-catalogue   Parameters { csv: system,code,display,category,validity_days,scope,price }
///     POST [base]/$load-qc          Parameters { csv: facility,system,code,scope,valid_from,valid_to; replace? }
///     GET  [base]/$qc-passes[?facility=org-a]   Parameters { pass* (the same six parts) }
extension RegisteredOperation {
    static let loadCatalogue = RegisteredOperation(
        name: "load-catalogue", resourceTypes: [], levels: [.system], allowsGet: false, affectsState: true,
        title: "Load the recognition catalogue (互认项目目录)",
        documentation: "Adds or replaces catalogue items (by system and code) from the CSV `huitong sharing load-catalogue` reads "
            + "(system,code,display,category,validity_days,scope,price): every bad row is reported with its line and nothing is "
            + "loaded. The catalogue is the CodeSystem " + RecognitionCatalogue.url + ". Administrators only.",
        parameters: [Parameter("csv", .in, min: 1, type: "string", "The list, header first"),
                     Parameter("return", .out, min: 1, type: "OperationOutcome", "How many items the catalogue has")],
        access: { _ in (.operation("load-catalogue"), "CodeSystem") },
        handler: { service, request in
            let items = try RecognitionCatalogue.parse(csv: try csv(request))
            let (count, changed) = try await RecognitionCatalogue.load(items, service: service)
            // A load that changes nothing writes nothing; it is still on the trail.
            if !changed { try await service.trail.append(.operation("load-catalogue"), type: "CodeSystem", entities: [], patients: [], query: "unchanged") }
            return .resource(OperationOutcome.information("\(items.count) rows; the catalogue has \(count) items\(changed ? "" : " (unchanged)")"))
        })

    static let loadQC = RegisteredOperation(
        name: "load-qc", resourceTypes: [], levels: [.system], allowsGet: false, affectsState: true,
        title: "Load facilities' QC passes (室间质评)",
        documentation: "Adds or replaces QC passes (by facility, item and valid_from) from the CSV `huitong sharing load-qc` reads "
            + "(facility,system,code,scope,valid_from,valid_to; facility: the Organization id its client writes as; dates "
            + "inclusive; every item in the catalogue): every bad row is reported with its line and nothing is loaded. "
            + "Administrators only.",
        parameters: [Parameter("csv", .in, min: 1, type: "string", "The list, header first"),
                     Parameter("replace", .in, type: "boolean", "The list is the whole of each facility it names: their other passes are removed"),
                     Parameter("return", .out, min: 1, type: "OperationOutcome", "How many passes were loaded (and removed)")],
        access: { _ in (.operation("load-qc"), "CodeSystem") },
        handler: { service, request in
            let passes = try QualityPass.parse(csv: try csv(request), catalogue: try await RecognitionCatalogue.stored(in: service.store))
            let replacing = try flag("replace", request)
            let audit = service.auditing
                ? [service.trail.event(.operation("load-qc"), type: "CodeSystem", entities: [], patients: [],
                                       query: "passes=\(passes.count)\(replacing ? "&replace=true" : "")")] : []
            let removed = try await QualityPass.load(passes, replacing: replacing, store: service.store, audit: audit)
            return .resource(OperationOutcome.information("\(passes.count) QC passes loaded" + (replacing ? ", \(removed) removed" : "")))
        })

    static let qcPasses = RegisteredOperation(
        name: "qc-passes", resourceTypes: [], levels: [.system], allowsGet: true, affectsState: false,
        title: "The QC passes loaded (室间质评)",
        documentation: "The facilities' QC passes the HR stamping uses, as `pass` parameters with the parts of the load-qc list "
            + "(facility, system, code, scope, valid_from, valid_to), ordered by facility, item and start.",
        parameters: [Parameter("facility", .in, type: "string", "Only this facility's (its Organization id)"),
                     Parameter("pass", .out, max: "*", type: nil, "A pass: facility, system, code, scope, valid_from, valid_to")],
        access: { _ in (.read, "CodeSystem") },
        handler: { service, request in
            let facility = request.parameter("facility")
            let passes = try await QualityPass.all(in: service.store)
                .filter { facility == nil || $0.facility == facility }
                .sorted { ($0.facility, $0.system, $0.code, $0.from) < ($1.facility, $1.system, $1.code, $1.from) }
            func part(_ name: String, _ type: String, _ value: String) -> JSON {
                .object(JSONObject([("name", .string(name)), (type, .string(value))]))
            }
            return .resource(.object(JSONObject([
                ("resourceType", .string("Parameters")),
                ("parameter", .array(passes.map { p in
                    .object(JSONObject([("name", .string("pass")), ("part", .array([
                        part("facility", "valueString", p.facility), part("system", "valueUri", p.system), part("code", "valueCode", p.code),
                        part("scope", "valueCode", p.scope.rawValue), part("valid_from", "valueDate", p.from), part("valid_to", "valueDate", p.to),
                    ]))]))
                })),
            ])))
        })

    /// A boolean parameter of the Parameters sent (absent: false).
    private static func flag(_ name: String, _ request: OperationRequest) throws(FHIRError) -> Bool {
        guard let p = (request.body?["parameter"]?.arrayValue ?? []).first(where: { $0["name"]?.stringValue == name }) else { return false }
        guard let value = p["valueBoolean"]?.boolValue else {
            throw FHIRError(.invalid, code: "value", "\(name) is a valueBoolean", at: "Parameters.parameter")
        }
        return value
    }

    /// The list a load operation was sent: Parameters with `csv` as a string.
    private static func csv(_ request: OperationRequest) throws(FHIRError) -> String {
        guard let body = request.body, body["resourceType"]?.stringValue == "Parameters" else {
            throw FHIRError(.invalid, code: "required", "Send Parameters with the list (CSV, header first) as 'csv' (valueString)")
        }
        let csv = (body["parameter"]?.arrayValue ?? []).first { $0["name"]?.stringValue == "csv" }?["valueString"]?.stringValue
        guard let csv, !csv.isEmpty else {
            throw FHIRError(.invalid, code: "required", "The list (CSV, header first) is the parameter 'csv' (valueString)", at: "Parameters.parameter")
        }
        return csv
    }
}
