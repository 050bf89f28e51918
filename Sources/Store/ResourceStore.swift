/// Storage behind the FHIR API. Implementations: `SQLiteStore` (embedded default);
/// PostgreSQL later. Routing and the ingest pipeline depend only on this protocol.
public protocol ResourceStore: Sendable {
    /// The current version of a resource (a deleted resource returns a record with `deleted`), or nil.
    func read(_ key: ResourceKey) async throws -> ResourceRecord?
    /// One version of a resource, or nil.
    func vread(_ key: ResourceKey, version: Int) async throws -> ResourceRecord?
    /// History, newest first.
    func history(_ query: HistoryQuery) async throws -> HistoryPage
    /// Keys of current, non-deleted resources matching a conditional query (at most `limit`).
    func search(_ query: SearchQuery, limit: Int) async throws -> [ResourceKey]
    /// One page of a search, in the query's sort order.
    func search(_ query: SearchQuery, page: PageRequest) async throws -> SearchPage
    /// A page of everything in a patient's compartment (resources referencing it, and the patient
    /// itself), in storage order; `types` and `since` filter (`$everything`). With only a type
    /// (`Patient` and no id), every patient and everything referencing any of them.
    func compartment(of patient: ResourceKey, types: [String]?, since: Int64?, page: PageRequest) async throws -> SearchPage
    /// Resources that `sources` reference through `parameter` (nil: any reference parameter),
    /// optionally only of `targetType` (`_include`).
    func include(from sources: [ResourceKey], parameter: String?, targetType: String?) async throws -> [ResourceRecord]
    /// Resources of `sourceType` that reference any of `targets` through `parameter` (nil: any) (`_revinclude`).
    func revinclude(of targets: [ResourceKey], sourceType: String, parameter: String?) async throws -> [ResourceRecord]
    /// Commits a unit atomically and durably; throws `StoreError` when a precondition fails.
    func commit(_ unit: WriteUnit) async throws -> [WriteOutcome]
    /// Number of current, non-deleted resources per type.
    func resourceCounts() async throws -> [String: Int]
    func close() async throws
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
}
