import Access
import FHIRModel
import Identity
// The only file of the platform that may commit resources (ADR 017).
@_spi(WritePipeline) import Store

/// One resource write as a channel asks for it, before anything has been done to it: a REST
/// interaction, a transaction or batch entry, an import line, an HL7 message's mapping, a
/// platform service's own record.
public struct WriteRequest: Sendable {
    /// Who wrote what is to be written.
    public enum Author: Sendable, Equatable {
        /// The principal, as a client: authorized on its type, attributed, stamped with the
        /// writer's facility, validated, and checked against the writer's rights on its rows.
        case client
        /// A platform service, from input it has already validated and in an operation it has
        /// already authorized (the master index's Persons and review Tasks, an e-health card's
        /// Person): neither stamped with the writer's facility nor checked against the writer's
        /// rights on rows, since the writer did not write it. `validate: false` only for shapes
        /// validated where they are built (the master index, on every Patient's path).
        case platform(validate: Bool)
    }

    public var key: ResourceKey
    /// POST, PUT, PATCH or DELETE (kept in history).
    public var method: String
    /// The resource (nil: a deletion).
    public var resource: JSON?
    public var author: Author
    public var ifMatch: Int?
    /// A client-chosen id that must not exist yet (a create never overwrites).
    public var mustNotExist: Bool
    /// The id was made by the server just now: no stored version can exist.
    public var newID: Bool
    /// Where a problem with this write is reported (`Bundle.entry[3].resource`).
    public var location: String?
    /// The document stream of the stored version, which this change of a Binary keeps (a
    /// binding, a PATCH that leaves `_data` alone; ADR 029): the resource is validated without
    /// the token, which only the platform writes, and the token is put back after.
    public var keptStream: String?

    /// A resource the principal writes.
    public init(key: ResourceKey, method: String, resource: JSON, ifMatch: Int? = nil, mustNotExist: Bool = false,
                newID: Bool = false, location: String? = nil) {
        self.key = key
        self.method = method
        self.resource = resource
        self.author = .client
        self.ifMatch = ifMatch
        self.mustNotExist = mustNotExist
        self.newID = newID
        self.location = location
    }

    /// A resource a platform service built.
    public static func generated(_ object: JSONObject, key: ResourceKey, method: String, ifMatch: Int? = nil,
                                 validate: Bool) -> WriteRequest {
        var request = WriteRequest(key: key, method: method, resource: .object(object), ifMatch: ifMatch)
        request.author = .platform(validate: validate)
        return request
    }

    public static func delete(_ key: ResourceKey, ifMatch: Int? = nil, author: Author = .client) -> WriteRequest {
        var request = WriteRequest(key: key, method: "DELETE", resource: .null, ifMatch: ifMatch)
        request.resource = nil
        request.author = author
        return request
    }

    public var isClient: Bool { author == .client }

    /// This change of a Binary with the document stream `stored` (its stored version, revealed)
    /// names carried over, when its `_data` is the stored one (`keptStream`).
    public func keepingStream(of stored: JSONObject, _ protection: IdentifierProtection?) -> WriteRequest {
        guard key.type == "Binary", case .object(var o)? = resource, let protection, o["data"] == nil, o["_data"] == stored["_data"],
              protection.streamReference(in: stored) != nil, let token = IdentifierProtection.encryptedToken(in: stored["_data"]) else { return self }
        o["_data"] = nil
        var out = self
        out.resource = .object(o)
        out.keptStream = token
        return out
    }

    /// The REST interaction that writing this request is, for the role rules.
    var interaction: Interaction {
        switch method {
        case "POST": .create
        case "PATCH": .patch
        case "DELETE": .delete
        default: .update
        }
    }
}

/// The one path every resource write takes (ADR 017), whatever the channel: REST interactions and
/// their conditional forms, every transaction and batch entry, bulk import, the HL7 gateway, the
/// e-health card service, the master index's operations, and the domain services to come. Its
/// stages, in order:
///
/// 1. **authorize** the interaction on each type (scopes, role; refusals audited);
/// 2. **stamp**: attribute identifier-only patient references, set the writer's facility
///    (`meta.source`, a Patient's `managingOrganization`); then the enricher adds what a domain
///    derives (the standard coding beside a facility's local code, ADR 022);
/// 3. **validate**, label sensitive categories, extract the index rows;
/// 4. **authorize the rows**: a resident writes only about themselves, sensitive data names its
///    patient, nobody changes another facility's record (this needs the validated resource's
///    compartment and labels, hence after 3);
/// 5. **protect identifiers** (encrypted content, blinded index rows; done with 3 on the prepared
///    write, and read by nothing in 4);
/// 6. **master-index plan**: a Patient write's Persons and review items join the unit;
/// 7. **audit**: one event for the unit, committed with it;
/// 8. **commit** atomically; the change feed's rows are written in the same transaction, which is
///    how the change is published to its consumers.
///
/// `ResourceStore.commit` is SPI: this file is the platform's only one that imports it.
public struct WritePipeline: Sendable {
    let service: FHIRService

    var policy: AccessPolicy { service.policy }
    var principal: Principal { service.principal }
    var trail: AuditTrail { service.trail }

    /// Writes `requests` as one atomic unit on behalf of the service's principal.
    /// - Parameters:
    ///   - assumptions: searches the unit rests on (conditional matches), re-checked at commit.
    ///   - interaction: what the unit is, for its audit event (`.transaction`, `.operation("import")`).
    ///   - auditQuery: what the audit event says was asked (a card's id).
    ///   - records: platform records committed with the unit (a card's own record).
    public func write(_ requests: [WriteRequest], assumptions: [Assumption] = [], as interaction: Interaction,
                      auditQuery: String? = nil, records: [RecordWrite] = []) async throws -> [WriteOutcome] {
        try await commit(try await prepareUnit(requests, assumptions: assumptions, as: interaction, auditQuery: auditQuery, records: records))
    }

    /// A unit prepared (stages 1–5 and the domains' companions) and not yet committed.
    public struct PendingUnit: Sendable {
        var unit: WriteUnit
        var warnings: [Int: [Issue]]
        let interaction: Interaction
        let auditQuery: String?

        /// The types the unit writes when committed: its writes, the companions the domains
        /// added, and the master index's Persons for its Patients.
        public var writtenTypes: Set<String> {
            var types = Set(unit.writes.map(\.key.type))
            if types.contains("Patient") { types.insert("Person") }
            return types
        }

        public var keys: Set<ResourceKey> { Set(unit.writes.map(\.key)) }
    }

    /// `write` in two steps: a bulk load prepares its next chunk while this one commits
    /// (`reads(preparing:)` says when that cannot change what the preparation sees).
    package func prepareUnit(_ requests: [WriteRequest], assumptions: [Assumption] = [], as interaction: Interaction,
                            auditQuery: String? = nil, records: [RecordWrite] = []) async throws -> PendingUnit {
        let writes = try await check(requests, as: interaction)
        var unit = WriteUnit(writes: writes, assumptions: assumptions)
        unit.records = records
        var warnings: [Int: [Issue]] = [:]
        if let enricher = service.enricher {
            // What a domain keeps beside a client's write (a Subscription's owner) and writes with
            // it (an order's DetectedIssue), in the same unit.
            var companions: [WriteRequest] = []
            for (i, (request, write)) in zip(requests, writes).enumerated() where request.isClient {
                unit.records += enricher.records(for: write, principal: principal)
                let c = try await enricher.companions(for: write, principal: principal)
                companions += c.writes
                if !c.warnings.isEmpty { warnings[i] = c.warnings }
            }
            for companion in companions { unit.writes.append(try await prepare(companion)) }
        }
        return PendingUnit(unit: unit, warnings: warnings, interaction: interaction, auditQuery: auditQuery)
    }

    /// Commits a prepared unit (stages 6–8).
    package func commit(_ pending: PendingUnit) async throws -> [WriteOutcome] {
        var outcomes = try await commit(pending.unit, as: pending.interaction, auditQuery: pending.auditQuery)
        for (i, issues) in pending.warnings where i < outcomes.count { outcomes[i].warnings = issues }
        return outcomes
    }

    /// The stored resource types that preparing a client's write of `type` reads, besides the
    /// stored version of the same resource; nil when a domain does not say (anything). The
    /// platform's own: Patients and their Persons (a patient named by an identifier), and for a
    /// document's holder its Binaries (`storedBindings`).
    public func reads(preparing type: String) -> Set<String>? {
        var reads: Set<String> = ["Patient", "Person"]
        if Self.documentHolders.contains(type) { reads.insert("Binary") }
        guard let enricher = service.enricher else { return reads }
        return enricher.reads(preparing: type).map { reads.union($0) }
    }

    /// Stages 1–5 without committing: what `$validate` asks (would these writes be accepted?).
    /// Returns the prepared writes; a refusal throws as the write would.
    public func check(_ requests: [WriteRequest], as interaction: Interaction) async throws -> [PreparedWrite] {
        for request in requests where request.isClient {
            try service.checkType(request.key.type)
            try await service.authorize(request.interaction, request.key.type)
            try IngestPipeline.checkWritable(request.key.type)
        }
        // Before anything reads or compares the stored versions (a domain's enrichment, a
        // resident's read receipt): a record the writer may not change is refused unseen.
        try await checkChanges(requests.filter(\.isClient), interaction)
        let checked = Set(requests.map(\.key))
        var requests = requests
        if let enricher = service.enricher, requests.contains(where: \.isClient) {
            requests = try await enricher.unit(requests, principal: principal)
        }
        requests = Self.bound(requests)
        requests += try await storedBindings(requests)
        try await checkChanges(requests.filter { $0.isClient && !checked.contains($0.key) }, interaction)
        var writes: [PreparedWrite] = []
        var clientWrites: [PreparedWrite] = []
        writes.reserveCapacity(requests.count)
        for request in requests {
            let write = try await prepare(request)
            writes.append(write)
            if request.isClient { clientWrites.append(write) }
        }
        try await checkResidentWrites(clientWrites, interaction)
        try checkAttributed(clientWrites)
        return writes
    }

    /// A document's bytes sent as a `Binary` beside the resource whose attachment points at it (an
    /// IHE MHD provide, an HL7 MDM message) are that resource's patient's data: a Binary of the
    /// unit without a `securityContext` gets the patient of the unit's resource that references it
    /// (`Attachment.url` = `Binary/<id>`) as its context, and that resource's security labels, so
    /// that it is read under the same decision. A Binary nothing in its unit names keeps no context,
    /// and only its facility reads it.
    static func bound(_ requests: [WriteRequest]) -> [WriteRequest] {
        let binaries = requests.indices.filter {
            requests[$0].key.type == "Binary" && requests[$0].resource?["securityContext"] == nil && requests[$0].isClient
        }
        guard !binaries.isEmpty else { return requests }
        var out = requests
        for i in binaries {
            guard case .object(let binary)? = requests[i].resource else { continue }
            let target = "Binary/" + requests[i].key.id
            guard case .object(let holder)? = requests.first(where: { $0.key.type != "Binary" && $0.resource.map { attaches($0, target) } == true })?.resource,
                  let bound = binding(binary, to: holder) else { continue }
            out[i].resource = .object(bound)
        }
        return out
    }

    /// `binary` read under the patient of `holder` (its `subject` or `patient`), with the holder's
    /// security labels; nil when the holder names no Patient.
    static func binding(_ binary: JSONObject, to holder: JSONObject) -> JSONObject? {
        guard let patient = [holder["subject"], holder["patient"]].compactMap({ $0?["reference"]?.stringValue })
            .first(where: { $0.hasPrefix("Patient/") }) else { return nil }
        var binary = binary
        binary["securityContext"] = .object(JSONObject([("reference", .string(patient))]))
        if let labels = holder["meta"]?["security"]?.arrayValue, !labels.isEmpty {
            var meta = binary["meta"]?.objectValue ?? JSONObject()
            let own = meta["security"]?.arrayValue ?? []
            meta["security"] = .array(own + labels.filter { !own.contains($0) })
            binary["meta"] = .object(meta)
        }
        return binary
    }

    /// Types whose attachments name a document's Binary by URL (a document's metadata, a report's
    /// presented form).
    static let documentHolders: Set<String> = ["DocumentReference", "DiagnosticReport"]

    /// A Binary sent earlier on its own (in its own type, without `X-Security-Context`) is its
    /// facility's only; when the same facility's DocumentReference or DiagnosticReport then points
    /// at it, it gets that resource's patient and labels as `bound` gives them within one unit: a
    /// new version of the Binary, written in the same unit (the stored version is what it
    /// replaces, `ifMatch`). Another facility's pointing binds nothing, nor does a writer whose
    /// scopes do not let it update Binaries (the binding is its write).
    func storedBindings(_ requests: [WriteRequest]) async throws -> [WriteRequest] {
        guard let facility = principal.facility, (try? policy.authorize(principal, .update, "Binary")) != nil else { return [] }
        let inUnit = Set(requests.map(\.key))
        var out: [WriteRequest] = []
        for request in requests where request.isClient && Self.documentHolders.contains(request.key.type) {
            guard case .object(let holder)? = request.resource else { continue }
            for id in Self.attachedBinaries(.object(holder)) {
                let key = ResourceKey("Binary", id)
                guard !inUnit.contains(key), !out.contains(where: { $0.key == key }),
                      let record = try await service.store.read(key), !record.deleted,
                      let binary = IdentifierProtection.parse(record.content, revealing: service.pipeline.protection),
                      binary["securityContext"] == nil, FHIRService.sourceFacility(of: binary) == facility,
                      let bound = Self.binding(binary, to: holder) else { continue }
                out.append(WriteRequest(key: key, method: "PUT", resource: .object(bound), ifMatch: record.version)
                    .keepingStream(of: binary, service.pipeline.protection))
            }
        }
        return out
    }

    /// The ids of the Binaries that attachments in `resource` point at (`Binary/<id>`, relative or absolute).
    static func attachedBinaries(_ resource: JSON) -> [String] {
        switch resource {
        case .object(let o):
            var ids: [String] = []
            if let parts = o["url"]?.stringValue?.split(separator: "/", omittingEmptySubsequences: false), parts.count >= 2,
               parts[parts.count - 2] == "Binary", FHIRPrimitive.isValidID(String(parts[parts.count - 1])) {
                ids.append(String(parts[parts.count - 1]))
            }
            return ids + o.members.flatMap { attachedBinaries($0.value) }
        case .array(let a):
            return a.flatMap { attachedBinaries($0) }
        default:
            return []
        }
    }

    /// Whether an attachment somewhere in `resource` points at `target` (`Binary/<id>`, relative or absolute).
    static func attaches(_ resource: JSON, _ target: String) -> Bool {
        switch resource {
        case .object(let o):
            if let url = o["url"]?.stringValue, url == target || url.hasSuffix("/" + target) { return true }
            return o.members.contains { attaches($0.value, target) }
        case .array(let a):
            return a.contains { attaches($0, target) }
        default:
            return false
        }
    }

    /// Stages 2, 3 and 5 for one request.
    func prepare(_ request: WriteRequest) async throws -> PreparedWrite {
        let ingest = service.pipeline
        guard let resource = request.resource else { return ingest.prepareDelete(request.key, ifMatch: request.ifMatch) }
        switch request.author {
        case .client:
            try await checkSource(resource, request)
            let attributed = try await service.attributed(resource, type: request.key.type)
            var stamped = service.stamped(attributed)
            var finished: JSONObject?
            if let enricher = service.enricher, case .object(var o) = stamped {
                // The enricher sees the id the resource is stored under (a create's body may name
                // another), so that one looking at the stored version looks at this resource's;
                // validation then sees the id the client sent.
                let sent = o["id"]
                o["id"] = .string(request.key.id)
                let facility = FHIRService.sourceFacility(of: o)
                var enriched = try await enricher.enrich(o, type: request.key.type, facility: facility, principal: principal)
                finished = try await enricher.finish(enriched, type: request.key.type, facility: facility, principal: principal)
                enriched["id"] = sent
                finished?["id"] = sent
                stamped = .object(enriched)
            }
            return try ingest.prepare(stamped, type: request.key.type, id: request.key.id, method: request.method,
                                      ifMatch: request.ifMatch, mustNotExist: request.mustNotExist, newID: request.newID,
                                      location: request.location, finished: finished, streamToken: request.keptStream)
        case .platform(validate: true):
            return try ingest.prepare(resource, type: request.key.type, id: request.key.id, method: request.method,
                                      ifMatch: request.ifMatch, mustNotExist: request.mustNotExist, newID: request.newID,
                                      location: request.location)
        case .platform(validate: false):
            guard case .object(let object) = resource else { throw FHIRError(.internal, code: "exception", "A generated resource is not an object") }
            return ingest.prepareGenerated(object, type: request.key.type, id: request.key.id, method: request.method, ifMatch: request.ifMatch)
        }
    }

    /// A facility writes only as itself: its writes are stamped with it (`FHIRService.stamped`), and
    /// one that says it comes from another of the platform's facilities (`meta.source`
    /// `urn:huitong:facility:…`) is refused (403, audited) rather than silently re-attributed.
    func checkSource(_ resource: JSON, _ request: WriteRequest) async throws {
        let prefix = FHIRService.facilitySource("")
        guard let facility = principal.facility, let source = resource["meta"]?["source"]?.stringValue,
              source.hasPrefix(prefix), source != FHIRService.facilitySource(facility) else { return }
        let reason = "\(request.key.type) says it comes from facility '\(source.dropFirst(prefix.count))' (meta.source); "
            + "a facility writes only as itself ('\(facility)')"
        try? await trail.append(request.interaction, type: request.key.type, entities: [], patients: [], outcome: .denied(reason))
        throw FHIRError(.forbidden, code: "forbidden", reason, at: (request.location ?? request.key.type) + ".meta.source")
    }

    /// A resident writes only about themselves, on every channel (a REST create or update, every
    /// entry of a transaction or batch, a conditional interaction): each resource written must be in
    /// the compartment of one of their own Patients.
    func checkResidentWrites(_ writes: [PreparedWrite], _ interaction: Interaction) async throws {
        guard policy.isResident(principal) else { return }
        let own = try await service.patientDataGate().residentOwn()
        for write in writes where write.action != .delete {
            let patient = WritePlanner.compartment(of: write).map { "Patient/" + $0 }
            guard let patient, own.contains(patient) else {
                let reason = "A resident writes only about themselves: \(write.key.type).patient must be one of "
                    + own.filter { $0.hasPrefix("Patient/") }.sorted().joined(separator: ", ")
                try? await trail.append(interaction, type: write.key.type, entities: [], patients: patient.map { [$0] } ?? [],
                                        outcome: .denied(reason))
                throw FHIRError(.forbidden, code: "forbidden", reason, at: "\(write.key.type).patient")
            }
        }
    }

    /// Patient data in a sensitive category must name the patient it is about, by reference or by
    /// an identifier the platform knows (ADR 016): a record nobody can be told to own would be
    /// readable by whoever may read unattributed data.
    func checkAttributed(_ writes: [PreparedWrite]) throws(FHIRError) {
        for write in writes where write.action != .delete && R4Compartments.patientDataTypes.contains(write.key.type) {
            let access = AccessColumns(key: write.key, index: write.index)
            guard access.compartment == nil, let labels = access.sensitive else { continue }
            throw FHIRError(.businessRule, code: "business-rule",
                            "\(write.key.type) is coded in a sensitive category (\(labels.split(separator: ",").joined(separator: ", "))) but names no "
                            + "patient the platform knows: reference the Patient, or identify it by an identifier (system and value) of a "
                            + "registered Patient", at: "\(write.key.type).subject")
        }
    }

    /// Refuses (403, audited) a write that would change an existing record the principal may not
    /// change (`AccessPolicy.mayChange`): another facility's, or for a resident someone else's.
    /// Checked on the current version before the write is prepared (nothing compares or enriches
    /// it with a record it may not change); only an administrator's write changes a record's
    /// facility, so the answer cannot turn between this read and the commit.
    func checkChanges(_ requests: [WriteRequest], _ interaction: Interaction) async throws {
        guard principal.role != .administrator else { return }
        for request in requests where request.method != "POST" && !request.mustNotExist {
            guard let record = try await service.store.read(request.key), !record.deleted else { continue }
            try await checkMayChange(record, interaction)
        }
    }

    /// Refuses (403, audited) a change of `record` by a principal who may not change it, before
    /// anything looks at its content: a PATCH checks this before applying its operations, whose
    /// errors would otherwise show values of a record the writer may not read.
    public func checkMayChange(_ record: ResourceRecord, _ interaction: Interaction) async throws {
        guard principal.role != .administrator else { return }
        let patient = AuditTrail.patient(of: record.key, content: record.content)
        let own = policy.isResident(principal) ? try await service.patientDataGate().residentOwn() : []
        guard !policy.mayChange(principal, sourceFacility: PatientDataGate.sourceFacility(record.content),
                                recordPatient: patient, own: own) else { return }
        let reason = policy.isResident(principal) ? "\(record.key) is not about you: a resident changes only their own records"
            : "\(record.key) was written by another facility (or the platform); a facility changes only its own records"
        try? await trail.append(interaction, type: record.key.type, entities: [record.key], patients: patient.map { [$0] } ?? [],
                                outcome: .denied(reason))
        throw FHIRError(.forbidden, code: "forbidden", reason)
    }

    /// Stages 6–8: commits a unit with its audit event, translating store refusals into FHIR errors
    /// (except `conditionChanged`, which `FHIRService.retrying` handles). Patient writes get their
    /// master-index writes (Persons, review items) in the same unit; when a concurrent write made
    /// that plan stale, it is planned again.
    private func commit(_ unit: WriteUnit, as interaction: Interaction, auditQuery: String?) async throws -> [WriteOutcome] {
        let ingest = service.pipeline
        var attempt = 0
        while true {
            attempt += 1
            var full = unit
            var planned = Set<ResourceKey>()
            var held = Set<String>()
            defer { service.linkage.release(held) }
            if let masterIndex = service.masterIndex, unit.writes.contains(where: { $0.key.type == "Patient" }) {
                held = masterIndex.lockNames(for: unit.writes)
                await service.linkage.acquire(held)
                let plan = try await masterIndex.plan(for: unit.writes)
                // A key believed too common to block on that is not (any more): plan under its name.
                if !plan.blockingKeys.isSubset(of: held) && attempt < FHIRService.maxAttempts { continue }
                for w in plan.writes {
                    full.writes.append(ingest.prepareGenerated(w.resource, type: w.type, id: w.id, method: w.method, ifMatch: w.ifMatch))
                    planned.insert(w.key)
                }
                // The plan carries assumptions only where other writers exist (PostgreSQL); within
                // one process the names held keep it current.
                full.assumptions += plan.assumptions
            }
            full.records += service.unitRecords
            let types = Set(unit.writes.map(\.key.type))
            if service.auditing {
                full.audit = [trail.event(interaction, type: types.count == 1 ? types.first : nil, entities: full.writes.map(\.key),
                                          patients: AuditTrail.patients(of: full.writes), query: auditQuery)]
            }
            do {
                return Array(try await service.store.commit(full).prefix(unit.writes.count))
            } catch StoreError.conditionChanged where !planned.isEmpty && unit.assumptions.isEmpty && attempt < FHIRService.maxAttempts {
                continue
            } catch StoreError.versionConflict(let key, _, _) where planned.contains(key) && attempt < FHIRService.maxAttempts {
                // A Person read for the plan was changed by a unit that shares no key with this one.
                continue
            } catch let error as StoreError {
                if error == .conditionChanged { throw error }
                throw FHIRError.from(error)
            }
        }
    }
}

extension FHIRService {
    /// The write pipeline on behalf of this service's principal: the only way to commit resources.
    public var writePipeline: WritePipeline { WritePipeline(service: self) }
}
