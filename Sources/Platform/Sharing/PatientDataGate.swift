import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Store

/// The access decision for one request's reads (ADR 016): the principal's `ReadScope`, which every
/// query of the request carries into its SQL, and the checks built on it — a record by id, older
/// versions, a resident's own Patients. It decides nothing itself: `AccessPolicy` says which
/// scope a principal gets, and the store's SQL applies it to each row. Facts are looked up per
/// request and never kept longer: a revoked consent counts from the next request.
public final class PatientDataGate: @unchecked Sendable {
    let store: any ResourceStore
    let masterIndex: MasterPatientIndex?
    let principal: Principal
    let origin: RequestOrigin
    /// Works out an older version's index entries (its patient, facility and labels), for
    /// decisions on versions that are not current.
    let pipeline: IngestPipeline?
    let policy = AccessPolicy()
    private let lock = NSLock()
    private var ownCache: Set<String>?
    private var scopeCache: ReadScope?

    init(store: any ResourceStore, masterIndex: MasterPatientIndex?, principal: Principal, origin: RequestOrigin,
         pipeline: IngestPipeline? = nil) {
        self.store = store
        self.masterIndex = masterIndex
        self.principal = principal
        self.origin = origin
        self.pipeline = pipeline
    }

    /// The rows this request may read, at the instant the request began.
    public func scope() async throws -> ReadScope {
        if let scope = lock.withLock({ scopeCache }) { return scope }
        var patients: [String] = []
        if policy.isResident(principal) {
            patients = try await residentOwn().compactMap { $0.hasPrefix("Patient/") ? String($0.dropFirst("Patient/".count)) : nil }
        }
        let scope = policy.readScope(principal, breakGlass: origin.breakGlassReason != nil, residentPatients: patients,
                                     now: Int64(Date().timeIntervalSince1970 * 1_000_000))
        lock.withLock { scopeCache = scope }
        return scope
    }

    /// Whether the principal's reads are restricted at all.
    public var restricted: Bool { principal.role != .administrator && origin.breakGlassReason == nil }

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

    /// Whether the principal may read the current version of a record.
    public func mayRead(_ record: ResourceRecord) async throws -> Bool {
        try await filter([record]).count == 1
    }

    /// The records (current versions) the principal may read, in order: one query.
    public func filter(_ records: [ResourceRecord]) async throws -> [ResourceRecord] {
        let scope = try await scope()
        guard !scope.isEverything, !records.isEmpty else { return records }
        let readable = try await store.readable(records.map(\.key), scope: scope)
        return records.filter { readable.contains($0.key) }
    }

    /// Whether the principal may read one stored version, judged on what that version says (its
    /// facility, patient and labels), which may differ from the current one's.
    public func mayRead(version record: ResourceRecord) async throws -> Bool {
        let scope = try await scope()
        if scope.isEverything { return true }
        guard let pipeline, let content = record.content,
              case .object(let object)? = try? JSONParser.parse(content.readableBytesView) else { return false }
        let entries = pipeline.indexEntries(forStored: object, type: record.key.type)
        return try await store.decide(AccessSubject(key: record.key, index: entries), scope: scope)
    }

    // MARK: facts

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

    static let sourceMarker = Array(#""source":"urn:huitong:facility:"#.utf8)

    /// The facility in the stored `meta.source` (written by the server for facility principals).
    public static func sourceFacility(_ content: ByteBuffer?) -> String? {
        guard let content else { return nil }
        return content.withUnsafeReadableBytes { bytes -> String? in
            guard let start = ByteSearch.find(sourceMarker, anchor: 10, in: bytes) else { return nil }
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }
    }
}
