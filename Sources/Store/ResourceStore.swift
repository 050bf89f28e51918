import FHIRModel

/// Storage behind the FHIR API. Implementations: `SQLiteStore` (embedded default) and
/// `PostgresStore` (module StorePostgres). Routing and the ingest pipeline depend only on this protocol.
public protocol ResourceStore: Sendable {
    /// The current version of a resource (a deleted resource returns a record with `deleted`), or nil.
    func read(_ key: ResourceKey) async throws -> ResourceRecord?
    /// The current versions of several resources (as `read`; keys not stored are absent). The
    /// master index reads its candidates with it.
    func read(keys: [ResourceKey]) async throws -> [ResourceKey: ResourceRecord]
    /// One version of a resource, or nil.
    func vread(_ key: ResourceKey, version: Int) async throws -> ResourceRecord?
    /// History, newest first.
    func history(_ query: HistoryQuery) async throws -> HistoryPage
    /// Keys of current, non-deleted resources matching a conditional query (at most `limit`).
    func search(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey]
    /// One page of a search, in the query's sort order.
    func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage
    /// A page of everything in the compartments of `patients` (resources referencing any of them,
    /// and the patients themselves), in storage order; `types` and `since` filter (`$everything`;
    /// several patients: a resident's records at every facility). With one key of only a type
    /// (`Patient` and no id), every patient and everything referencing any of them.
    func compartment(of patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest, scope: ReadScope) async throws -> SearchPage
    /// Current resources of `type` having each of `codes` (any system) under the token parameter
    /// `parameter`, per code: the master index's blocking lookups, one query for many keys. Codes
    /// held by more than `limitPerCode` resources come back in `overLimit`, without their rows.
    /// Answers with record numbers, from the index alone: a common key's hundreds of holders cost
    /// no record reads; `keys(ofRecords:)` names the few the caller wants.
    func resources(of type: String, withToken parameter: String, codes: [String], limitPerCode: Int) async throws -> TokenLookup
    /// The type and id of records numbered by `resources(of:withToken:codes:limitPerCode:)`
    /// (records gone since are absent).
    func keys(ofRecords records: [Int]) async throws -> [Int: ResourceKey]
    /// Current resources of `type` that reference any of `targets` through `parameter` (the master
    /// index's Persons of a set of Patients), by index lookup.
    func resources(of type: String, referencing targets: [ResourceKey], parameter: String) async throws -> [ResourceRecord]
    /// Resources that `sources` reference through `parameter` (nil: any reference parameter),
    /// optionally only of `targetType` (`_include`).
    func include(from sources: [ResourceKey], parameter: String?, targetType: String?, scope: ReadScope) async throws -> [ResourceRecord]
    /// Resources of `sourceType` that reference any of `targets` through `parameter` (nil: any) (`_revinclude`).
    func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?, scope: ReadScope) async throws -> [ResourceRecord]
    /// Which of `keys` (current, not deleted) `scope` lets its reader see (ADR 016): the decision
    /// on reads by id, by the SQL every search applies.
    func readable(_ keys: [ResourceKey], scope: ReadScope) async throws -> Set<ResourceKey>
    /// Whether `scope` lets its reader see a version described by `subject` (older versions).
    func decide(_ subject: AccessSubject, scope: ReadScope) async throws -> Bool
    /// Commits a unit atomically and durably; throws `StoreError` when a precondition fails.
    /// Resource writes reach it only through the platform's write pipeline (`WritePipeline`, ADR
    /// 017): the requirement is SPI, so a file must ask for it by name, and only the pipeline, the
    /// stores and their tests do. Platform records and audit events take `commitRecords`.
    @_spi(WritePipeline) func commit(_ unit: WriteUnit) async throws -> [WriteOutcome]
    /// A platform record (not expired at `now`, microseconds), read from the primary.
    func record(kind: String, id: String, now: Int64) async throws -> PlatformRecord?
    /// Every unexpired platform record of a kind, by id.
    func records(kind: String, now: Int64) async throws -> [PlatformRecord]
    /// Unexpired records of a kind with ids after `after` (in id order, at most `limit`): a queue
    /// read in pages (a subscription's events, ids of fixed width).
    func records(kind: String, after: String, limit: Int, now: Int64) async throws -> [PlatformRecord]
    /// Audit events about any of `patients` (references; every event when empty), newest first,
    /// before chain position `before`.
    func auditEvents(patients: [String], before: Int?, limit: Int) async throws -> [StoredAuditEvent]
    func auditEvent(seq: Int) async throws -> StoredAuditEvent?
    /// Recomputes the audit hash chain and reports the first event that does not fit.
    func verifyAuditChain(progress: @Sendable (Int) -> Void) async throws -> AuditChainReport
    /// The newest archive anchor: the last archived event's place and hash ((0, genesis): none).
    func auditAnchor() async throws -> (seq: Int, hash: String)
    /// Audit events after `seq`, in chain order (for archiving).
    func auditEvents(after seq: Int, limit: Int) async throws -> [StoredAuditEvent]
    /// The last event an archive of everything recorded before `before` (µs) ends with (0: none).
    func auditArchiveCut(before: Int64) async throws -> Int
    /// Removes the archived events through `seq` — whose hash must still be `hash`, or nothing is
    /// removed — and records them as the chain's new anchor, naming the archive.
    func pruneAudit(through seq: Int, hash: String, archive: String) async throws
    /// Number of current, non-deleted resources per type.
    func resourceCounts() async throws -> [String: Int]
    /// Concepts of the stored code systems with canonical URL `system` (ADR 022), in code order
    /// after `after`, at most `limit`; `version` nil: every stored version.
    func concepts(system: String, version: String?, _ query: ConceptQuery, after: String?, limit: Int) async throws -> [ConceptEntry]
    /// How many current resources of `facility` carry each code of `systems` (the most used first,
    /// at most `limit`): the data-quality report of a facility's local codes (ADR 022).
    func codeCounts(facility: String, systems: [String], limit: Int) async throws -> [CodeCount]
    /// Hands the changes committed since `consumer` last consumed (at most `limit`, in commit
    /// order) to `handle`, and moves the consumer's saved position past them only when `handle`
    /// returns. One caller per consumer name runs at a time, across every node of a deployment;
    /// another caller gets 0 at once. Returns the number of changes handed over.
    func consumeChanges(consumer: String, limit: Int,
                        _ handle: @Sendable ([ResourceChange]) async throws -> Void) async throws -> Int
    /// Fired after this process commits resource writes (and, while `watchChanges` runs on
    /// PostgreSQL, after any node's): what change-feed consumers wait on.
    var changeSignal: ChangeSignal { get }
    /// Until cancelled, fires `changeSignal` for commits made by other processes (PostgreSQL:
    /// `LISTEN`); returns at once where there are none (SQLite: one process owns the file).
    func watchChanges() async throws
    /// Rebuilds the search index of every current resource (of `type`, when given) from the
    /// stored content, in batches; `progress` gets (done, total) after each batch.
    func reindex(type: String?, extract: @Sendable (JSONObject, String) -> [IndexEntry],
                 progress: @Sendable (Int, Int) -> Void) async throws -> Int
    /// Whether other processes may write the same data (PostgreSQL with several nodes: yes;
    /// SQLite, locked to one process: no).
    var hasOtherWriters: Bool { get }
    /// Documents kept apart from their resource's JSON, streamed in and out (ADR 029).
    var documentStreams: any DocumentStreams { get }
    /// Refreshes the query planner's statistics; worth it after bulk loads.
    func analyze() async throws
    /// The highest schema migration applied.
    func schemaVersion() async throws -> Int
    func close() async throws
}

extension ResourceKey {
    /// Whether a store can hold the key: no stored type or id has a NUL (a C string ends there,
    /// and PostgreSQL text cannot hold one), so a key with one names nothing.
    package var isStorable: Bool { !type.utf8.contains(0) && !id.utf8.contains(0) }
}

extension ResourceStore {
    public func read(keys: [ResourceKey]) async throws -> [ResourceKey: ResourceRecord] {
        var found: [ResourceKey: ResourceRecord] = [:]
        for key in Set(keys) { found[key] = try await read(key) }
        return found
    }
}

/// What `resources(of:withToken:codes:limitPerCode:)` found.
public struct TokenLookup: Sendable {
    /// The resources per code, as the store's record numbers (codes nobody holds are absent). A
    /// record number names one resource for as long as it exists.
    public var matches: [String: [Int]] = [:]
    /// Codes held by more resources than the limit.
    public var overLimit: Set<String> = []

    public init() {}
}

/// One committed change of a resource, as the change feed delivers it.
public struct ResourceChange: Sendable, Equatable {
    public let key: ResourceKey
    public let version: Int
    /// Microseconds since the Unix epoch.
    public let lastUpdated: Int64
    public let deleted: Bool

    public init(key: ResourceKey, version: Int, lastUpdated: Int64, deleted: Bool) {
        self.key = key
        self.version = version
        self.lastUpdated = lastUpdated
        self.deleted = deleted
    }
}

/// A code and how many resources carry it.
public struct CodeCount: Sendable, Equatable {
    public let system: String
    public let code: String
    public let resources: Int

    public init(system: String, code: String, resources: Int) {
        self.system = system
        self.code = code
        self.resources = resources
    }
}

/// Which concepts of a code system `ResourceStore.concepts` returns.
public enum ConceptQuery: Sendable, Equatable {
    /// Those with these codes.
    case codes([String])
    /// `code` and every concept below it.
    case below(String)
    /// `code` and every concept above it.
    case above(String)
    /// Every concept.
    case all
}

/// Which history to list and how much of it.
public struct HistoryQuery: Sendable {
    public var type: String?
    public var id: String?
    /// Only versions with lastUpdated ≥ since (microseconds).
    public var since: Int64?
    /// Only versions current at some time in [at.low, at.high).
    public var at: (low: Int64, high: Int64)?
    public var count: Int
    public var offset: Int
    /// Upper bound on lastUpdated fixed by the first page, so later pages do not shift while others write.
    public var snapshot: Int64?

    public init(type: String? = nil, id: String? = nil, since: Int64? = nil, at: (low: Int64, high: Int64)? = nil,
                count: Int = 20, offset: Int = 0, snapshot: Int64? = nil) {
        self.type = type
        self.id = id
        self.since = since
        self.at = at
        self.count = count
        self.offset = offset
        self.snapshot = snapshot
    }
}

/// A page of history with the total and the snapshot bound to page on with.
public struct HistoryPage: Sendable {
    public let records: [ResourceRecord]
    public let total: Int
    public let snapshot: Int64

    public init(records: [ResourceRecord], total: Int, snapshot: Int64) {
        self.records = records
        self.total = total
        self.snapshot = snapshot
    }
}

extension ResourceStore {
    /// Commits platform records (clients, users, sessions, card uses, one-time ids) and audit
    /// events atomically and durably: never a resource, which only the write pipeline commits.
    public func commitRecords(_ records: [RecordWrite], audit: [AuditRecord] = []) async throws {
        var unit = WriteUnit(writes: [])
        unit.records = records
        unit.audit = audit
        _ = try await commit(unit)
    }
}
