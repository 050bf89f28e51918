import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Store

/// Gathers the facts the access decision needs about other facilities' patient data — who wrote a
/// record, whether the reading facility treats the resident now, what the resident's consents say
/// — and asks `AccessPolicy` (which decides; this only looks things up). Facts are looked up per
/// resident once per request and never kept longer: a revoked consent counts from the next request.
public final class PatientDataGate: @unchecked Sendable {
    let store: any ResourceStore
    let masterIndex: MasterPatientIndex?
    let principal: Principal
    let origin: RequestOrigin
    let sensitive: SensitiveCategories
    let policy = AccessPolicy()
    /// Per resident (any of its Patients' references): treatment and consent, for this request.
    private var residents: [String: Resident] = [:]

    struct Resident {
        var treatment: Bool
        var registered: Bool
        /// Their active consents, evaluated per record (type, sensitive labels).
        var consents: [JSONObject]
    }
    private let lock = NSLock()

    init(store: any ResourceStore, masterIndex: MasterPatientIndex?, principal: Principal, origin: RequestOrigin,
         sensitive: SensitiveCategories) {
        self.store = store
        self.sensitive = sensitive
        self.masterIndex = masterIndex
        self.principal = principal
        self.origin = origin
    }

    /// Whether the principal's reads depend on whose data it is (see `AccessPolicy`).
    public var restricted: Bool { policy.readsAcrossFacilities(principal) || policy.isResident(principal) }

    /// A resident's own Patients and master Person (`Patient/x`, `Person/y`), looked up once.
    public func residentOwn() async throws -> Set<String> {
        if let own = lock.withLock({ ownCache }) { return own }
        var own = Set<String>()
        if let me = principal.patient {
            own.insert(me)
            for id in try await linkedPatients(me) { own.insert("Patient/" + id) }
            let parts = me.split(separator: "/")
            if parts.count == 2, parts[0] == "Patient", let person = try await masterIndex?.linkedRecords(of: ResourceKey("Patient", String(parts[1])))?.person {
                own.insert(person.description)
            }
        }
        lock.withLock { ownCache = own }
        return own
    }

    private var ownCache: Set<String>?

    public func mayRead(_ record: ResourceRecord) async throws -> Bool {
        if policy.isResident(principal) {
            return policy.mayRead(resident: principal, type: record.key.type,
                                  recordPatient: AuditTrail.patient(of: record.key, content: record.content), own: try await residentOwn())
        }
        guard restricted, let patient = AuditTrail.patient(of: record.key, content: record.content) else { return true }
        let source = Self.sourceFacility(record.content)
        if let own = principal.facility, source == own { return true }
        let resident = try await resident(patient)
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000), facility = principal.facility ?? ""
        var facts = PatientDataFacts(
            sourceFacility: source, treatment: resident.treatment,
            consent: ConsentEvaluator.verdict(resident.consents, facility: facility, type: record.key.type, now: now),
            breakGlass: origin.breakGlassReason != nil,
            demographic: record.key.type == "Patient" || record.key.type == "Person", registered: resident.registered)
        facts.sensitive = labels(of: record)
        if !facts.sensitive.isEmpty {
            facts.optedIn = ConsentEvaluator.optIns(resident.consents, facility: facility, type: record.key.type, now: now)
        }
        return policy.mayRead(principal, patientData: facts)
    }

    static let labelMarker = Array("v3-ActCode".utf8)

    /// The sensitive categories a stored record is labelled with (parsed only when it carries a
    /// v3 ActCode label at all).
    func labels(of record: ResourceRecord) -> Set<String> {
        guard let content = record.content,
              content.withUnsafeReadableBytes({ ByteSearch.find(Self.labelMarker, anchor: 1, in: $0) }) != nil,
              case .object(let resource)? = try? JSONParser.parse(content.readableBytesView) else { return [] }
        return sensitive.labels(ofStored: resource)
    }

    /// The records the principal may read, in order.
    public func filter(_ records: [ResourceRecord]) async throws -> [ResourceRecord] {
        guard restricted else { return records }
        var out: [ResourceRecord] = []
        for r in records where try await mayRead(r) { out.append(r) }
        return out
    }

    // MARK: facts

    func resident(_ patient: String) async throws -> Resident {
        if let known = lock.withLock({ residents[patient] }) { return known }
        let patients = try await linkedPatients(patient)
        let facility = principal.facility ?? ""
        var treatment = false
        var registered = false
        var consents: [JSONObject] = []
        for p in patients {
            if !treatment { treatment = try await treats(p, facility: facility) }
            if !registered, let record = try await store.read(ResourceKey("Patient", p)) {
                registered = Self.sourceFacility(record.content) == facility
            }
            let query = SearchQuery(type: "Consent", clauses: [
                .init(parameter: "patient", parameterType: "reference", values: [.reference(type: "Patient", id: p)]),
                .init(parameter: "status", values: [.token(system: nil, code: "active")]),
            ])
            for key in try await store.search(query, limit: 100) {
                if let r = try await store.read(key), let c = r.content, case .object(let o)? = try? JSONParser.parse(c.readableBytesView) {
                    consents.append(o)
                }
            }
        }
        let facts = Resident(treatment: treatment, registered: registered, consents: consents)
        lock.withLock { residents[patient] = facts }
        return facts
    }

    /// The ids of every Patient of the resident (through the master index), or of the one given.
    func linkedPatients(_ reference: String) async throws -> [String] {
        let parts = reference.split(separator: "/")
        guard parts.count == 2 else { return [] }
        let key = ResourceKey(String(parts[0]), String(parts[1]))
        if key.type == "Person" {
            return try await masterIndex?.patients(of: key)?.map(\.id) ?? []
        }
        if let linked = try await masterIndex?.linkedRecords(of: key) { return linked.patients.map(\.id) }
        return [key.id]
    }

    /// A current treatment relationship: an open Encounter, an active EpisodeOfCare or a booked
    /// Appointment the facility recorded for the patient, or a referral Task it owns.
    func treats(_ patient: String, facility: String) async throws -> Bool {
        let subject = SearchQuery.Clause(parameter: "patient", parameterType: "reference", values: [.reference(type: "Patient", id: patient)])
        let source = SearchQuery.Clause(parameter: "_source", parameterType: "uri", values: [.uri(FHIRService.facilitySource(facility))])
        func status(_ codes: [String]) -> SearchQuery.Clause {
            .init(parameter: "status", values: codes.map { .token(system: nil, code: $0) })
        }
        let queries = [
            SearchQuery(type: "Encounter", clauses: [subject, source, status(["planned", "arrived", "triaged", "in-progress", "onleave"])]),
            SearchQuery(type: "EpisodeOfCare", clauses: [subject, source, status(["planned", "waitlist", "active", "onhold"])]),
            SearchQuery(type: "Appointment", clauses: [subject, source, status(["proposed", "pending", "booked", "arrived", "checked-in"])]),
            SearchQuery(type: "Task", clauses: [subject, status(["requested", "received", "accepted", "ready", "in-progress"]),
                .init(parameter: "owner", parameterType: "reference", values: [.reference(type: "Organization", id: facility)])]),
        ]
        for q in queries where !(try await store.search(q, limit: 1)).isEmpty { return true }
        return false
    }

    static let sourceMarker = Array(#""source":"urn:huitong:facility:"#.utf8)

    /// The facility in the stored `meta.source` (written by the server for facility principals).
    static func sourceFacility(_ content: ByteBuffer?) -> String? {
        guard let content else { return nil }
        return content.withUnsafeReadableBytes { bytes -> String? in
            guard let start = ByteSearch.find(sourceMarker, anchor: 10, in: bytes) else { return nil }
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }
    }
}
