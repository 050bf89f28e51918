import Access
import FHIRModel
import Foundation
import NIOCore
import Store

/// The platform's own operations, registered as any domain module registers its own (ADR 019).
extension OperationRegistry {
    public static var platform: OperationRegistry {
        var registry = OperationRegistry()
        registry.register(.validate)
        registry.register(.patientEverything)
        registry.register(.personEverything)
        registry.register(.match)
        registry.register(.pix)
        for decision in MasterIndexOperations.decisions { registry.register(.masterIndexDecision(decision.name, decision.documentation)) }
        return registry
    }
}

extension RegisteredOperation {
    typealias P = Parameter

    /// `$validate` (R4 Resource-validate), type and instance level (`ValidateOperation`).
    static let validate = RegisteredOperation(
        name: "validate", resourceTypes: [], levels: [.type, .instance], allowsGet: false, affectsState: false,
        title: "Validate a resource",
        documentation: "Whether the resource would be accepted: with no mode its content against R4's structure; with mode create, "
            + "update or delete, the write pipeline's stages for that write, stopped before the commit. Nothing is stored.",
        parameters: [P("resource", .in, type: "Resource", "The resource, as the body or in Parameters"),
                     P("mode", .in, type: "code", "create | update | delete (none: the content only)"),
                     P("return", .out, min: 1, type: "OperationOutcome", "The issues found; information only when there are none")],
        definition: "http://hl7.org/fhir/OperationDefinition/Resource-validate",
        access: { (.operation("validate"), $0.type) },
        handler: { service, request in
            .resource(try await ValidateOperation(service: service).run(type: request.type!, id: request.id, body: request.body,
                                                                         mode: request.parameter("mode")))
        })

    /// `Patient/$everything` and `Patient/{id}/$everything`, paged (`PatientEverything`).
    static let patientEverything = RegisteredOperation(
        name: "everything", resourceTypes: ["Patient"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Fetch a patient's record",
        documentation: "The patient, everything in its compartment, and what those records reference; as a searchset Bundle in pages "
            + "(_count, _type, _since). Type level: every patient the caller may read.",
        parameters: everythingParameters, definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        access: { _ in (.operation("everything"), "Patient") },
        handler: { service, request in try await everything(service, request, person: nil) })

    /// `Person/{id}/$everything`: the records of every Patient a master Person links.
    static let personEverything = RegisteredOperation(
        name: "everything", resourceTypes: ["Person"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "Fetch a resident's record across facilities",
        documentation: "Everything of every Patient the master Person links (the resident at every facility), and the Person, "
            + "as a searchset Bundle in pages; only what the caller may read.",
        parameters: everythingParameters,
        access: { _ in (.operation("everything"), "Person") },
        handler: { service, request in try await everything(service, request, person: request.id) })

    static let everythingParameters: [Parameter] = [
        P("_count", .in, type: "integer", "Entries per page (at most the server's search page limit)"),
        P("_type", .in, max: "*", type: "code", "Only these resource types"),
        P("_since", .in, type: "instant", "Only records changed since"),
        P("return", .out, min: 1, type: "Bundle", "A searchset Bundle, paged"),
    ]

    static func everything(_ service: FHIRService, _ request: OperationRequest, person: String?) async throws -> OperationResult {
        var page = PageRequest(count: min(max(try request.integer("_count") ?? 100, 1), SearchQueryParser.maxCount))
        page.after = try request.integer("_after")
        page.snapshot = try request.integer("_snapshot")
        let types = request.parameter("_type").map { $0.split(separator: ",").map(String.init) }
        var since: Int64?
        if let s = request.parameter("_since") {
            guard let t = FHIRDateTime.parse(s, kind: .instant) ?? FHIRDateTime.parse(s, kind: .dateTime) else {
                throw FHIRError(.invalid, code: "value", "Invalid _since '\(s)': expected an instant", at: "_since")
            }
            since = t.low
        }
        let operation = PatientEverything(service: service)
        let result: PatientEverything.Page
        if let person {
            let patients = try await MasterIndexOperations(service: service).patients(ofPerson: person)
            result = try await operation.run(person: person, patients: patients, types: types, since: since, page: page)
        } else {
            result = try await operation.run(patientID: request.id, types: types, since: since, page: page)
        }
        let selfURL = "\(request.baseURL)/\(request.path)"
        var keep = ""
        for name in ["_type", "_since"] {
            if let value = request.parameter(name) {
                keep += "&\(name)=" + (value.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? value)
            }
        }
        var links: [(relation: String, url: String)] = [("self", selfURL + (request.query.map { "?" + $0 } ?? ""))]
        if let next = result.next {
            links.append(("next", "\(selfURL)?_count=\(next.count)&_snapshot=\(next.snapshot ?? 0)&_after=\(next.after ?? 0)" + keep))
        }
        var writer = BundleWriter(type: "searchset", total: result.total, links: links)
        for r in result.records { writer.add(fullUrl: "\(request.baseURL)/\(r.key)", resource: r.content) }
        return .bundle(writer.bytes())
    }

    /// `Patient/$match` (R4): candidates for a Patient, best first, graded.
    static let match = RegisteredOperation(
        name: "match", resourceTypes: ["Patient"], levels: [.type], allowsGet: false, affectsState: false,
        title: "Find a patient's registrations",
        documentation: "Candidates the master patient index finds for the Patient given, best first, with a match grade; only "
            + "Patients the caller may read.",
        parameters: [P("resource", .in, min: 1, type: "Resource", "The Patient to match"),
                     P("onlyCertainMatches", .in, type: "boolean", "Only certain matches"),
                     P("count", .in, type: "integer", "At most this many"),
                     P("return", .out, min: 1, type: "Bundle", "A searchset Bundle with search.score and the match-grade extension")],
        definition: "http://hl7.org/fhir/OperationDefinition/Patient-match",
        access: { _ in (.operation("match"), "Patient") },
        handler: { service, request in
            guard let body = request.body else {
                throw FHIRError(.invalid, code: "required", "$match needs a Parameters body with the Patient in 'resource'", at: "Parameters")
            }
            let results = try await MasterIndexOperations(service: service).match(body)
            var writer = BundleWriter(type: "searchset", total: results.count, links: [("self", "\(request.baseURL)/Patient/$match")])
            for r in results {
                let search = JSONObject([
                    ("extension", .array([.object(JSONObject([("url", .string("http://hl7.org/fhir/StructureDefinition/match-grade")),
                                                              ("valueCode", .string(r.grade))]))])),
                    ("mode", .string("match")),
                    ("score", .number(String(format: "%.4f", r.probability))),
                ])
                writer.add(fullUrl: "\(request.baseURL)/\(r.record.key)", resource: r.record.content, extra: [("search", .object(search))])
            }
            return .bundle(writer.bytes())
        })

    /// IHE PIXm `Patient/$ihe-pix`.
    static let pix = RegisteredOperation(
        name: "ihe-pix", resourceTypes: ["Patient"], levels: [.type], allowsGet: true, affectsState: false,
        title: "PIXm: a resident's identifiers",
        documentation: "Every identifier (and Patient) of the resident a source identifier belongs to, across facilities; one "
            + "the caller may not see answers as nobody's.",
        parameters: [P("sourceIdentifier", .in, min: 1, type: "Identifier", "system|value"),
                     P("targetSystem", .in, max: "*", type: "uri", "Only identifiers of these systems"),
                     P("targetIdentifier", .out, max: "*", type: "Identifier", "An identifier of the resident"),
                     P("targetId", .out, max: "*", type: "Reference", "A Patient of the resident")],
        definition: "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
        access: { _ in (.operation("ihe-pix"), "Patient") },
        handler: { service, request in
            guard let source = request.parameter("sourceIdentifier") else {
                throw FHIRError(.invalid, code: "required", "$ihe-pix needs sourceIdentifier=system|value", at: "sourceIdentifier")
            }
            let targets = request.parameters.filter { $0.0 == "targetSystem" }.flatMap { $0.1.split(separator: ",").map(String.init) }
            return .resource(try await MasterIndexOperations(service: service).pix(sourceIdentifier: source, targetSystems: targets))
        })

    /// The master index reviewers' decisions (`$empi-link`, …), system level.
    static func masterIndexDecision(_ name: String, _ documentation: String) -> RegisteredOperation {
        RegisteredOperation(
            name: name, resourceTypes: [], levels: [.system], allowsGet: false, affectsState: true,
            title: "Master index decision: \(name)", documentation: documentation,
            parameters: [P("patient", .in, type: "Reference", "The Patient (link, not-match, unlink)"),
                         P("person", .in, type: "Reference", "The Person (link, not-match, unlink)"),
                         P("from", .in, type: "Reference", "The Person merged (merge, unmerge)"),
                         P("into", .in, type: "Reference", "The Person kept (merge, unmerge)"),
                         P("reason", .in, min: 1, type: "string", "Why"),
                         P("actor", .in, type: "string", "Who decided, where nobody is logged in"),
                         P("return", .out, min: 1, type: "Parameters", "What changed")],
            access: { _ in (.operation(name), "Person") },
            handler: { service, request in
                guard let body = request.body else { throw FHIRError(.invalid, code: "required", "$\(name) needs a Parameters body", at: "Parameters") }
                return .resource(try await MasterIndexOperations(service: service).decide(name, body))
            })
    }
}

extension CharacterSet {
    /// What may stand unescaped in a query parameter's value.
    static let urlQueryValueAllowed = CharacterSet.urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))
}
