import Access
import FHIRModel
import Identity
import NIOCore
import Store

/// The master patient index's operations: `Patient/$match` (R4), PIXm `Patient/$ihe-pix`,
/// `Person/{id}/$everything`, and the reviewers' decisions (`$empi-link`, `$empi-not-match`,
/// `$empi-unlink`, `$empi-merge`, `$empi-unmerge`).
public struct MasterIndexOperations: Sendable {
    public let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    /// The decision operations and what they do (for the CapabilityStatement).
    public static let decisions: [(name: String, documentation: String)] = [
        ("empi-link", "MANUAL link of a Patient to a Person (parameters patient, person, reason, actor)"),
        ("empi-not-match", "A Patient is not a Person; never linked to it automatically again (patient, person, reason, actor)"),
        ("empi-unlink", "Take a Patient out of its Person into a Person of its own (patient, person, reason, actor)"),
        ("empi-merge", "Two Persons are one resident: move the links of `from` into `into` (from, into, reason, actor)"),
        ("empi-unmerge", "Undo a merge (from, into, reason, actor)"),
    ]

    var index: MasterPatientIndex {
        get throws(FHIRError) {
            guard let index = service.masterIndex else {
                throw FHIRError(.unsupported, code: "not-supported", "The master patient index is turned off on this server")
            }
            return index
        }
    }

    /// `Patient/$match`: candidates for the Patient in `parameters` (a Parameters resource with
    /// `resource`, `onlyCertainMatches`, `count`, or a bare Patient), best first.
    public func match(_ body: JSON) async throws -> [(record: ResourceRecord, probability: Double, grade: String)] {
        try await service.authorize(.operation("match"), "Patient")
        let parameters = Parameters(body)
        guard case .object(let patient)? = body["resourceType"]?.stringValue == "Patient" ? body : parameters.resource("resource") else {
            throw FHIRError(.invalid, code: "required", "$match needs a Patient in the parameter 'resource'", at: "Parameters.parameter")
        }
        _ = try service.pipeline.prepare(.object(patient), type: "Patient", id: patient["id"]?.stringValue ?? "match", method: "POST",
                                         location: "Parameters.parameter.resource")
        let onlyCertain = parameters.bool("onlyCertainMatches") ?? false
        let count = parameters.integer("count") ?? 10
        let index = try index
        // Candidates are other facilities' registrations too: only those the caller may read are shown.
        let gate = service.patientDataGate()
        var results: [(ResourceRecord, Double, String)] = []
        var graded: [(ResourceKey, Double, String)] = []
        for (key, p) in try await index.candidates(for: patient) {
            let grade = p >= index.rules.autoLinkThreshold ? "certain" : (p >= index.rules.reviewThreshold ? "probable"
                : (p >= 0.1 ? "possible" : "certainly-not"))
            if grade == "certainly-not" || (onlyCertain && grade != "certain") { continue }
            graded.append((key, p, grade))
        }
        let records = try await service.store.read(keys: graded.map(\.0))
        let readable = Set(try await gate.filter(graded.compactMap { records[$0.0] }.filter { !$0.deleted }).map(\.key))
        for (key, p, grade) in graded where readable.contains(key) {
            guard let record = records[key] else { continue }
            results.append((record, p, grade))
            if results.count >= count { break }
        }
        try await service.trail.appendRead(.operation("match"), type: "Patient", records: results.map(\.0))
        return results.map { (service.presenter.record($0.0), $0.1, $0.2) }
    }

    /// PIXm: every identifier (and Patient) of the resident a source identifier belongs to.
    public func pix(sourceIdentifier: String, targetSystems: [String]) async throws -> JSON {
        try await service.authorize(.operation("ihe-pix"), "Patient")
        let parts = sourceIdentifier.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw FHIRError(.invalid, code: "value", "sourceIdentifier must be system|value", at: "sourceIdentifier")
        }
        let query = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier",
                                values: service.conditionals.tokenMatches(String(parts[0]) + "|" + String(parts[1])))])
        // Only Patients the caller may read are looked at: an identifier of a resident it may not
        // see answers exactly as one nobody has (ADR 016), and the attempt is audited either way.
        let gate = service.patientDataGate()
        guard let source = try await service.store.search(query.scoped(try await gate.scope()), limit: 1).first else {
            try await service.trail.append(.operation("ihe-pix"), type: "Patient", entities: [], patients: [],
                                           query: IdentifierPresenter.auditedQuery("sourceIdentifier=\(sourceIdentifier)"))
            throw FHIRError(.notFound, code: "not-found", "No Patient has the identifier \(sourceIdentifier)", at: "sourceIdentifier")
        }
        // Of the resident's registrations, only those the caller may read are cross-referenced.
        let linked = try await index.linkedRecords(of: source)?.patients ?? [source]
        let readable = Set(try await gate.filter(Array(try await service.store.read(keys: linked).values.filter { !$0.deleted })).map(\.key))
        let patients = linked.filter(readable.contains)
        var out: [JSON] = []
        var seen = Set<String>()
        var shown: [ResourceKey] = []
        for key in patients {
            guard let record = try await service.store.read(key), !record.deleted,
                  let content = service.presenter.content(record.content, type: "Patient"),
                  case .object(let p)? = try? JSONParser.parse(content.readableBytesView) else { continue }
            shown.append(key)
            for identifier in p["identifier"]?.arrayValue ?? [] {
                let system = identifier["system"]?.stringValue ?? ""
                guard targetSystems.isEmpty || targetSystems.contains(system),
                      seen.insert(system + "|" + (identifier["value"]?.stringValue ?? "")).inserted else { continue }
                out.append(Parameters.parameter("targetIdentifier", "valueIdentifier", identifier))
            }
            if targetSystems.isEmpty {
                out.append(Parameters.parameter("targetId", "valueReference", .object(JSONObject([("reference", .string("\(key)"))]))))
            }
        }
        try await service.trail.append(.operation("ihe-pix"), type: "Patient", entities: shown, patients: shown.map(\.description),
                                       query: IdentifierPresenter.auditedQuery("sourceIdentifier=\(sourceIdentifier)"))
        return .object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array(out))]))
    }

    /// The Patients a Person links (404 when there is no such Person).
    public func patients(ofPerson id: String) async throws -> [ResourceKey] {
        try await service.authorize(.read, "Person")
        guard let patients = try await index.patients(of: ResourceKey("Person", id)) else {
            throw FHIRError.notFound(ResourceKey("Person", id))
        }
        return patients
    }

    /// A reviewer's decision, committed with its decision record; returns a Parameters naming the
    /// Persons changed and the decision Task.
    public func decide(_ operation: String, _ body: JSON) async throws -> JSON {
        try await service.authorize(.operation(operation), "Person")
        let parameters = Parameters(body)
        func reference(_ name: String, _ type: String) throws(FHIRError) -> ResourceKey {
            guard let text = parameters.reference(name), let key = Self.key(text), key.type == type else {
                throw FHIRError(.invalid, code: "required", "$\(operation) needs '\(name)' as a reference to a \(type)", at: "Parameters.parameter")
            }
            return key
        }
        let decision: ReviewDecision
        switch operation {
        case "empi-link": decision = .link(patient: try reference("patient", "Patient"), person: try reference("person", "Person"))
        case "empi-not-match": decision = .notMatch(patient: try reference("patient", "Patient"), person: try reference("person", "Person"))
        case "empi-unlink": decision = .unlink(patient: try reference("patient", "Patient"), person: try reference("person", "Person"))
        case "empi-merge": decision = .merge(from: try reference("from", "Person"), into: try reference("into", "Person"))
        case "empi-unmerge": decision = .unmerge(from: try reference("from", "Person"), into: try reference("into", "Person"))
        default: throw FHIRError(.notFound, code: "not-supported", "Unknown operation $\(operation)")
        }
        guard let reason = parameters.string("reason"), !reason.isEmpty else {
            throw FHIRError(.invalid, code: "required", "A decision needs a 'reason'", at: "Parameters.parameter")
        }
        // Who decided: the authenticated reviewer; a name in the body only where nobody logged in
        // (`--dev`, command line).
        let principal = service.principal
        let actor = principal.kind == .client || principal.kind == .user
            ? "\(principal.kind.rawValue)/\(principal.subject)" : (parameters.string("actor") ?? "unidentified reviewer")
        let index = try index
        for attempt in 1...16 {
            let plan: LinkagePlan
            do {
                plan = try await index.plan(decision, actor: actor, reason: reason)
            } catch let error as MasterIndexError {
                switch error.kind {
                case .unknownRecord: throw FHIRError(.notFound, code: "not-found", error.message)
                case .conflict: throw FHIRError(.conflict, code: "conflict", error.message)
                case .invalid: throw FHIRError(.invalid, code: "invalid", error.message)
                }
            }
            let writes = plan.writes.map {
                WriteRequest.generated($0.resource, key: ResourceKey($0.type, $0.id), method: $0.method, ifMatch: $0.ifMatch, validate: true)
            }
            do {
                _ = try await service.writePipeline.write(writes, as: .operation(operation))
            } catch let error as FHIRError where error.category == .preconditionFailed && attempt < 16 {
                continue   // a Person changed since it was read: decide again on the new state
            }
            var out = plan.writes.filter { $0.type == "Person" }.map {
                Parameters.parameter("person", "valueReference", .object(JSONObject([("reference", .string("Person/\($0.id)"))])))
            }
            if let record = plan.writes.last(where: { $0.type == "Task" && $0.method == "POST" }) {
                out.append(Parameters.parameter("decision", "valueReference", .object(JSONObject([("reference", .string("Task/\(record.id)"))]))))
            }
            return .object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array(out))]))
        }
        throw FHIRError(.conflict, code: "conflict", "The master index kept changing while the decision was made; try again")
    }

    static func key(_ reference: String) -> ResourceKey? {
        let parts = reference.split(separator: "/").suffix(2)
        guard parts.count == 2 else { return nil }
        return ResourceKey(String(parts.first!), String(parts.last!))
    }
}

/// Reading a FHIR `Parameters` resource.
struct Parameters {
    let parameters: [JSON]

    init(_ body: JSON) {
        parameters = body["resourceType"]?.stringValue == "Parameters" ? (body["parameter"]?.arrayValue ?? []) : []
    }

    func first(_ name: String) -> JSON? { parameters.first { $0["name"]?.stringValue == name } }
    func resource(_ name: String) -> JSON? { first(name)?["resource"] }
    func string(_ name: String) -> String? { first(name).flatMap { $0["valueString"]?.stringValue ?? $0["valueCode"]?.stringValue } }
    func bool(_ name: String) -> Bool? { first(name)?["valueBoolean"]?.boolValue }
    func integer(_ name: String) -> Int? { first(name)?["valueInteger"]?.numberText.flatMap { Int($0) } }
    func reference(_ name: String) -> String? {
        first(name).flatMap { $0["valueReference"]?["reference"]?.stringValue ?? $0["valueString"]?.stringValue }
    }

    static func parameter(_ name: String, _ valueName: String, _ value: JSON) -> JSON {
        .object(JSONObject([("name", .string(name)), (valueName, value)]))
    }
}
