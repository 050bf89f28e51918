import Access
import FHIRModel
import Identity
import NIOCore
import Store

/// The result of one FHIR interaction, independent of HTTP.
public struct InteractionResult: Sendable {
    /// How the interaction ended, in FHIR's terms; the HTTP layer and Bundle entry responses give it
    /// a status (`restStatus`).
    public enum Disposition: Sendable {
        /// Read, updated, or found (a conditional create's match, a delete with nothing to delete).
        case ok
        case created
        /// Deleted: nothing to show.
        case deleted

        public var restStatus: Int {
            switch self {
            case .ok: 200
            case .created: 201
            case .deleted: 204
            }
        }
    }

    public var disposition: Disposition
    public var key: ResourceKey?
    public var version: Int?
    public var lastUpdated: Int64?
    /// The resource as stored (exact bytes), when there is one.
    public var content: ByteBuffer?
    /// An informational OperationOutcome (e.g. delete of a missing resource).
    public var outcome: JSON?
    /// Warnings about a write that succeeded (`WriteOutcome.warnings`).
    public var warnings: [Issue] = []

    public init(_ disposition: Disposition, key: ResourceKey? = nil, version: Int? = nil, lastUpdated: Int64? = nil,
                content: ByteBuffer? = nil, outcome: JSON? = nil) {
        self.disposition = disposition
        self.key = key
        self.version = version
        self.lastUpdated = lastUpdated
        self.content = content
        self.outcome = outcome
    }

    init(_ o: WriteOutcome, _ disposition: Disposition) {
        self.init(disposition, key: o.key, version: o.version, lastUpdated: o.lastUpdated,
                  content: o.content.map { ByteBuffer(bytes: $0) })
        warnings = o.warnings
    }
}

/// FHIR REST semantics (read, vread, create, update, patch, delete, conditional
/// variants, history) over a `ResourceStore`, with every write going through the
/// `IngestPipeline`. The HTTP layer maps requests onto these calls, each on behalf of the
/// request's principal (`acting(as:)`): every interaction first asks the `AccessPolicy`.
public struct FHIRService: Sendable {
    public let store: any ResourceStore
    /// On whose behalf the interactions run. A service nobody acts through (`Principal.nobody`)
    /// is refused everything, so a caller that forgets `acting(as:)` fails closed.
    public private(set) var principal: Principal
    /// Where the request came from (network address, break-the-glass reason), for the audit trail.
    public private(set) var origin: RequestOrigin = .local
    /// Platform records committed with every write unit of this service (an HL7 message's
    /// control id, so that a message sent again is recognised).
    public private(set) var unitRecords: [RecordWrite] = []
    /// Adds derived content to client writes before validation (the terminology module's facility
    /// code maps; nil: nothing added).
    public var enricher: (any WriteEnricher)?
    public let policy = AccessPolicy()
    public let pipeline: IngestPipeline
    /// Links every Patient write to a master Person in the same transaction (nil: off).
    public let masterIndex: MasterPatientIndex?
    /// Units with Patients plan and commit holding the names of their Patients and blocking keys
    /// (`MasterPatientIndex.lockNames`), so that two plans resting on the same facts never overlap
    /// in this process and neither makes the other stale; registrations sharing nothing plan side by
    /// side and meet in one group commit. Correctness does not rest on it: the plan's
    /// assumptions catch every conflict with other nodes, and Person versions every other one.
    let linkage = NamedLocks()
    let conditionals: SearchQueryParser
    static let maxAttempts = 64

    /// - Parameters:
    ///   - matching: the master patient index's rules; nil turns matching off.
    ///   - principal: on whose behalf (`.platform` for the operator's command-line work).
    /// False only for a benchmark's unaudited baseline (`serve --dev --no-audit`).
    public private(set) var auditing: Bool

    public init(store: any ResourceStore, pipeline: IngestPipeline = IngestPipeline(), matching: MatchRules? = .defaults,
                principal: Principal = .nobody, auditing: Bool = true) {
        self.store = store
        self.principal = principal
        self.auditing = auditing
        self.pipeline = pipeline
        self.conditionals = SearchQueryParser(protection: pipeline.protection)
        self.masterIndex = matching.map { MasterPatientIndex(store: store, rules: $0, protection: pipeline.protection) }
    }

    /// The same service on behalf of `principal`.
    public func acting(as principal: Principal, from origin: RequestOrigin = .local) -> FHIRService {
        var copy = self
        copy.principal = principal
        copy.origin = origin
        return copy
    }

    /// What this principal sees of stored ID and phone numbers (every response passes through it).
    public var presenter: IdentifierPresenter { IdentifierPresenter(protection: pipeline.protection, principal: principal) }

    /// Whether a write's result carries the resource as the caller sees it. Off for `Prefer:
    /// return=minimal`: nothing is shown, so nothing is presented — a 10 MB Binary is not
    /// parsed, opened and written again for a response without a body.
    public var presentsWrites = true

    /// The same service, its writes answering without the resource.
    public func withoutWrittenContent() -> FHIRService {
        var copy = self
        copy.presentsWrites = false
        return copy
    }

    /// A write's result as the caller gets it.
    func written(_ result: InteractionResult) -> InteractionResult {
        guard presentsWrites else {
            var out = result
            out.content = nil
            return out
        }
        return presenter.result(result)
    }

    /// The same service, committing `records` with its writes.
    public func recording(_ records: [RecordWrite]) -> FHIRService {
        var copy = self
        copy.unitRecords = records
        return copy
    }

    /// The audit trail of this principal's requests.
    /// The same service, its writes not in the audit trail: only for the platform's publication of
    /// the definitions it ships (subscription topics, code systems), which carry no one's data and
    /// keep their versions in history; the access trail records who did what to records.
    public func publishing() -> FHIRService {
        var quiet = self.acting(as: .platform)
        quiet.auditing = false
        return quiet
    }

    public var trail: AuditTrail { AuditTrail(store: store, principal: principal, origin: origin, enabled: auditing) }

    /// Asks the access decision; a refusal is audited and becomes a 403 OperationOutcome.
    public func authorize(_ interaction: Interaction, _ type: String?) async throws(FHIRError) {
        do {
            try policy.authorize(principal, interaction, type)
        } catch {
            // The refusal stands even if its audit event cannot be stored.
            try? await trail.append(interaction, type: type, entities: [], patients: [], outcome: .denied(error.reason))
            throw FHIRError(.forbidden, code: "forbidden", error.reason)
        }
    }

    /// A request that breaks the glass must come from an emergency role; others are refused (audited).
    public func checkBreakGlass() async throws(FHIRError) {
        guard origin.breakGlassReason != nil else { return }
        do {
            try policy.authorizeBreakGlass(principal)
        } catch {
            try? await trail.append(.operation("break-glass"), type: nil, entities: [], patients: [], outcome: .denied(error.reason))
            throw FHIRError(.forbidden, code: "forbidden", error.reason)
        }
    }

    /// The access decision on this principal's reads (one per request: facts are not kept).
    public func patientDataGate() -> PatientDataGate {
        PatientDataGate(store: store, masterIndex: masterIndex, principal: principal, origin: origin, pipeline: pipeline)
    }

    /// Refuses (403, audited) a record the principal may not read: another facility's patient data
    /// without a treatment relationship, consent or opt-in. `version`: judge this stored version
    /// on what it says itself (`vread`, history), not on the current one.
    func checkPatientData(_ record: ResourceRecord, _ interaction: Interaction, gate: PatientDataGate? = nil,
                          version: Bool = false) async throws {
        let gate = gate ?? patientDataGate()
        let allowed = version ? try await gate.mayRead(version: record) : try await gate.mayRead(record)
        guard allowed else {
            let reason = "\(record.key) is another facility's record of a resident this facility has no current treatment "
                + "relationship with, or whose consent refuses it"
            try? await trail.append(interaction, type: record.key.type, entities: [record.key],
                                    patients: AuditTrail.patients(of: [record]), outcome: .denied(reason))
            throw FHIRError(.forbidden, code: "forbidden", reason)
        }
    }

    /// Whether resources of `type` may be shown to the principal (includes, `$everything`, history).
    public func mayRead(_ type: String) -> Bool {
        policy.mayRead(principal, type)
    }

    /// A facility writes only as itself: its writes carry it as `meta.source` (and a Patient's
    /// `managingOrganization`), set here and never taken from the body. Principals without a
    /// facility (administrators, the platform's own imports) keep what the body says.
    public func stamped(_ resource: JSON) -> JSON {
        guard let facility = principal.facility, case .object(var o) = resource else { return resource }
        var meta = o["meta"]?.objectValue ?? JSONObject()
        meta["source"] = .string(Self.facilitySource(facility))
        o["meta"] = .object(meta)
        if o["resourceType"]?.stringValue == "Patient" {
            o["managingOrganization"] = .object(JSONObject([("reference", .string("Organization/\(facility)"))]))
        }
        return .object(o)
    }

    /// The `meta.source` of a facility's writes (searchable with `_source`).
    public static func facilitySource(_ facility: String) -> String { "urn:huitong:facility:" + facility }

    /// The facility a resource says it comes from (`meta.source` of the platform's form).
    public static func sourceFacility(of resource: JSONObject) -> String? {
        let prefix = facilitySource("")
        guard let source = resource["meta"]?["source"]?.stringValue, source.hasPrefix(prefix), source.count > prefix.count else { return nil }
        return String(source.dropFirst(prefix.count))
    }

    public func checkType(_ type: String) throws(FHIRError) {
        guard FHIRSchema.r4.isResourceType(type) else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown resource type '\(type)'")
        }
        if Self.withoutEndpoint.contains(type) {
            throw FHIRError(.notFound, code: "not-supported", "R4 gives \(type) no REST endpoint: it is exchanged as the input and output of operations")
        }
    }

    /// An operation's type: any R4 resource type (`Parameters/$validate` included).
    public func checkOperationType(_ type: String) throws(FHIRError) {
        guard FHIRSchema.r4.isResourceType(type) else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown resource type '\(type)'")
        }
    }

    /// Resource types R4 defines without a RESTful endpoint (`Parameters`: "there is no RESTful
    /// endpoint associated with this resource").
    static let withoutEndpoint: Set<String> = ["Parameters"]

    /// The rows this principal may read (for one request).
    public func readScope() async throws -> ReadScope {
        try await patientDataGate().scope()
    }

    /// `inlining`: a Binary's streamed document is opened into `data` (ADR 029; not when the
    /// response's subset leaves `data` out).
    public func read(_ type: String, _ id: String, inlining: Bool = true) async throws -> InteractionResult {
        let record = try await checkedRead(type, id)
        return type == "Binary" && inlining ? try await inliningStream(record, presented(record)) : presented(record)
    }

    /// The current version of a resource, after the access decision, audited.
    func checkedRead(_ type: String, _ id: String) async throws -> ResourceRecord {
        try checkType(type)
        try await authorize(.read, type)
        let key = ResourceKey(type, id)
        guard let record = try await store.read(key) else { throw FHIRError.notFound(key) }
        if record.deleted { throw FHIRError.gone(key, version: record.version) }
        try await checkPatientData(record, .read)
        try await trail.appendRead(.read, type: type, records: [record])
        return record
    }

    func presented(_ record: ResourceRecord) -> InteractionResult {
        InteractionResult(.ok, key: record.key, version: record.version, lastUpdated: record.lastUpdated,
                          content: presenter.content(record.content, type: record.key.type))
    }

    public func vread(_ type: String, _ id: String, version: String) async throws -> InteractionResult {
        let record = try await checkedVRead(type, id, version: version)
        let result = InteractionResult(.ok, key: record.key, version: record.version, lastUpdated: record.lastUpdated,
                                       content: presenter.content(record.content, type: type))
        return type == "Binary" ? try await inliningStream(record, result) : result
    }

    /// One version of a resource, after the access decision, audited.
    func checkedVRead(_ type: String, _ id: String, version: String) async throws -> ResourceRecord {
        try checkType(type)
        try await authorize(.vread, type)
        let key = ResourceKey(type, id)
        guard let v = Int(version), let record = try await store.vread(key, version: v) else {
            throw FHIRError(.notFound, code: "not-found", "Version \(version) of \(key) is not known")
        }
        if record.deleted { throw FHIRError(.gone, code: "deleted", "Version \(version) of \(key) is a deletion") }
        try await checkPatientData(record, .vread, version: true)
        try await trail.appendRead(.vread, type: type, records: [record])
        return record
    }

    /// History of one resource (`type` and `id`), of a type, or of everything (neither).
    public func history(_ query: HistoryQuery) async throws -> HistoryPage {
        if let type = query.type {
            try checkType(type)
            try await authorize(query.id == nil ? .search : .history, type)
        } else {
            try await authorize(.systemHistory, nil)
        }
        let gate = patientDataGate()
        if query.id == nil {
            do {
                try policy.authorizeHistoryAcrossResidents(principal)
            } catch {
                try? await trail.append(.history, type: query.type, entities: [], patients: [], outcome: .denied(error.reason))
                throw FHIRError(.forbidden, code: "forbidden", error.reason)
            }
        }
        let page = try await store.history(query)
        if gate.restricted {
            // One resource's history (the only one restricted readers get): every version, its
            // count included, is theirs to see or none is.
            for record in page.records where record.content != nil { try await checkPatientData(record, .history, gate: gate, version: true) }
        }
        try await trail.appendRead(query.type == nil ? .systemHistory : .history, type: query.type, records: page.records)
        return HistoryPage(records: presenter.records(page.records), total: page.total, snapshot: page.snapshot)
    }

    /// `POST /Type` with optional `If-None-Exist`.
    public func create(_ type: String, body: JSON, ifNoneExist: String? = nil) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(ifNoneExist == nil ? .create : .conditionalCreate, type)
        return try await retrying {
            var assumptions: [Assumption] = []
            if let ifNoneExist {
                // Matched only among what the caller may read: a hidden match is no match (ADR 016).
                let query = try conditionals.parse(type: type, query: ifNoneExist).scoped(try await readScope())
                if let existing = try await atMostOneMatch(query, "If-None-Exist '\(ifNoneExist)'"), let record = try await store.read(existing) {
                    // The existing resource is shown: a read, audited as one.
                    try await trail.appendRead(.conditionalCreate, type: type, records: [record],
                                               query: IdentifierPresenter.auditedQuery(ifNoneExist))
                    return written(InteractionResult(.ok, key: existing, version: record.version,
                                                              lastUpdated: record.lastUpdated, content: record.content))
                }
                assumptions.append(Assumption(query: query, expected: []))
            }
            let write = WriteRequest(key: ResourceKey(type, IngestPipeline.newID()), method: "POST", resource: body)
            let outcome = try await writePipeline.write([write], assumptions: assumptions,
                                                        as: ifNoneExist == nil ? .create : .conditionalCreate)[0]
            return written(InteractionResult(outcome, .created))
        }
    }

    /// `PUT /Type/id`: update, or create with the client's id.
    public func update(_ type: String, _ id: String, body: JSON, ifMatch: Int? = nil) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.update, type)
        guard FHIRPrimitive.isValidID(id) else { throw FHIRError(.invalid, code: "value", "'\(id)' is not a valid resource id") }
        guard let bodyID = body["id"]?.stringValue else {
            throw FHIRError(.invalid, code: "required", "The resource in an update must have an id", at: "\(type).id")
        }
        guard bodyID == id else {
            throw FHIRError(.invalid, code: "invalid", "Resource id '\(bodyID)' does not match the URL id '\(id)'", at: "\(type).id")
        }
        let write = WriteRequest(key: ResourceKey(type, id), method: "PUT", resource: body, ifMatch: ifMatch)
        let outcome = try await writePipeline.write([write], as: .update)[0]
        return written(InteractionResult(outcome, outcome.created ? .created : .ok))
    }

    /// `PUT /Type?query`: update the single match, or create when nothing matches.
    public func conditionalUpdate(_ type: String, query: String, body: JSON, ifMatch: Int? = nil) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.conditionalUpdate, type)
        let parsed = try conditionals.parse(type: type, query: query).scoped(try await readScope())
        return try await retrying {
            let match = try await atMostOneMatch(parsed, "Conditional update '\(query)'")
            let bodyID = body["id"]?.stringValue
            let id: String
            if let match {
                if let bodyID, bodyID != match.id {
                    throw FHIRError(.invalid, code: "invalid", "Resource id '\(bodyID)' differs from the matching resource \(match)")
                }
                id = match.id
            } else {
                id = bodyID ?? IngestPipeline.newID()
            }
            // Nothing matched but the body names an id: create it, never overwrite another resource.
            let write = WriteRequest(key: ResourceKey(type, id), method: "PUT", resource: body, ifMatch: ifMatch,
                                     mustNotExist: match == nil && bodyID != nil, newID: match == nil && bodyID == nil)
            let assumption = Assumption(query: parsed, expected: match.map { [$0] } ?? [])
            let outcome = try await writePipeline.write([write], assumptions: [assumption], as: .conditionalUpdate)[0]
            return written(InteractionResult(outcome, outcome.created ? .created : .ok))
        }
    }

    /// `PATCH /Type/id` with a JSON Patch document; atomic against concurrent updates.
    public func patch(_ type: String, _ id: String, patch: JSON, ifMatch: Int? = nil) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.patch, type)
        return try await retrying { try await patched(ResourceKey(type, id), patch: patch, ifMatch: ifMatch) }
    }

    /// `PATCH /Type?query` (R4 http.html#patch, conditional patch): patches the single match among
    /// the rows the caller may read (none: 404, as for a record that does not exist; more than
    /// one: 412); the match must still be the one at commit, or the search runs again.
    public func conditionalPatch(_ type: String, query: String, patch: JSON) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.patch, type)
        let parsed = try conditionals.parse(type: type, query: query).scoped(try await readScope())
        return try await retrying {
            guard let match = try await atMostOneMatch(parsed, "Conditional patch '\(query)'") else {
                throw FHIRError(.notFound, code: "not-found", "No \(type) matched '\(query)'; nothing was patched")
            }
            return try await patched(match, patch: patch, ifMatch: nil, assumptions: [Assumption(query: parsed, expected: [match])])
        }
    }

    /// One attempt at a patch of the current version of `key`.
    func patched(_ key: ResourceKey, patch: JSON, ifMatch: Int?, assumptions: [Assumption] = []) async throws -> InteractionResult {
        guard let record = try await store.read(key) else { throw FHIRError.notFound(key) }
        if record.deleted { throw FHIRError.gone(key, version: record.version) }
        // Whether the writer may change it, before the patch touches its content: the errors
        // of a patch's operations and of validating its result show values of the record.
        try await writePipeline.checkMayChange(record, .patch)
        if let ifMatch, ifMatch != record.version {
            throw FHIRError(.preconditionFailed, code: "conflict", "Version conflict on \(key): If-Match expected version \(ifMatch), current is \(record.version)")
        }
        let current = try pipeline.parseStored(record.content)
        let patchedResource = try JSONPatch.apply(patch, to: current)
        guard patchedResource["resourceType"]?.stringValue == key.type, patchedResource["id"]?.stringValue == key.id else {
            throw FHIRError(.invalid, code: "invalid", "A patch must not change resourceType or id")
        }
        // The version read above must still be current at commit: concurrent patches cannot interleave.
        let write = WriteRequest(key: key, method: "PATCH", resource: patchedResource, ifMatch: record.version)
            .keepingStream(of: current.objectValue ?? JSONObject(), pipeline.protection)
        do {
            return written(InteractionResult(try await writePipeline.write([write], assumptions: assumptions, as: .patch)[0], .ok))
        } catch let error as FHIRError where error.category == .preconditionFailed && ifMatch == nil {
            throw StoreError.conditionChanged
        }
    }

    public func delete(_ type: String, _ id: String, ifMatch: Int? = nil) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.delete, type)
        try IngestPipeline.checkWritable(type)
        let outcome = try await writePipeline.write([.delete(ResourceKey(type, id), ifMatch: ifMatch)], as: .delete)[0]
        if !outcome.changed {
            return InteractionResult(.ok, key: outcome.key,
                                     outcome: OperationOutcome.information("\(type)/\(id) does not exist or is already deleted; nothing was changed"))
        }
        return InteractionResult(.deleted, key: outcome.key, version: outcome.version, lastUpdated: outcome.lastUpdated)
    }

    /// `DELETE /Type?query`: deletes the single match (more than one → 412).
    public func conditionalDelete(_ type: String, query: String) async throws -> InteractionResult {
        try checkType(type)
        try await authorize(.conditionalDelete, type)
        try IngestPipeline.checkWritable(type)
        let parsed = try conditionals.parse(type: type, query: query).scoped(try await readScope())
        return try await retrying {
            guard let match = try await atMostOneMatch(parsed, "Conditional delete '\(query)'") else {
                return InteractionResult(.ok, outcome: OperationOutcome.information("No \(type) matched '\(query)'; nothing was deleted"))
            }
            let outcome = try await writePipeline.write([.delete(match)], assumptions: [Assumption(query: parsed, expected: [match])],
                                                        as: .conditionalDelete)[0]
            return InteractionResult(.deleted, key: outcome.key, version: outcome.version, lastUpdated: outcome.lastUpdated)
        }
    }

    /// The single resource a conditional interaction's search finds (nil for none); more than one is a 412.
    func atMostOneMatch(_ query: SearchQuery, _ what: String) async throws -> ResourceKey? {
        let matches = try await store.search(query, limit: 2)
        if matches.count > 1 {
            throw FHIRError(.preconditionFailed, code: "multiple-matches", "\(what) matched more than one \(query.type)")
        }
        return matches.first
    }

    /// Re-runs a conditional interaction whose search result changed before it could commit.
    func retrying<T>(_ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await body()
            } catch StoreError.conditionChanged where attempt < Self.maxAttempts {
                continue
            } catch let error as StoreError {
                throw FHIRError.from(error)
            }
        }
    }
}
