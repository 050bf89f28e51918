import FHIRModel

/// One resource change, fully prepared outside the writer: the content template and
/// index entries are computed; only version, time and storage row id are left to commit.
public struct PreparedWrite: Sendable {
    public enum Action: Sendable { case create, update, delete }

    public let key: ResourceKey
    public let action: Action
    /// POST, PUT, PATCH or DELETE, kept in history.
    public let method: String
    public let template: ResourceTemplate?
    public let index: [IndexEntry]
    /// `If-Match`: the version that must be current (nil: no check).
    public let ifMatch: Int?
    /// For creates with a client-chosen id: fail if the resource exists (create never overwrites).
    public let mustNotExist: Bool
    /// The resource as validated (for pipeline stages after preparation, such as the master
    /// patient index); nil for deletions.
    public let resource: JSONObject?
    /// A pending document stream (ADR 029) this version is the first to name: its pending mark
    /// is removed in the same transaction, and the write fails if the mark is gone (the stream
    /// was removed as abandoned), so no committed version names a removed stream.
    public var namesStream: String?

    public init(key: ResourceKey, action: Action, method: String, template: ResourceTemplate?,
                index: [IndexEntry], ifMatch: Int? = nil, mustNotExist: Bool = false, resource: JSONObject? = nil) {
        self.resource = resource
        self.key = key
        self.action = action
        self.method = method
        self.template = template
        self.index = index
        self.ifMatch = ifMatch
        self.mustNotExist = mustNotExist
    }
}

/// A search whose result a write depended on (conditional create/update/delete and
/// conditional references). The writer re-runs it under its lock; a different answer
/// means the unit was prepared on stale data and must be prepared again.
public struct Assumption: Sendable {
    public let query: SearchQuery
    public let expected: [ResourceKey]
    /// What concurrent writers must not decide at the same time (PostgreSQL takes a lock on each):
    /// by default the search itself; the master index names its blocking keys, so that two units
    /// sharing any key are serialized even when their searches differ.
    /// Built when asked for (only the PostgreSQL writer asks): describing a query by reflection
    /// cost the SQLite path a twentieth of an HL7 message's CPU.
    /// The search's lock leaves out whose rows it sees (the reader and the instant of its scope):
    /// two units asking the same question must meet on one lock whoever asks.
    public var locks: [String] { named ?? [String(describing: query.scoped(.everything))] }
    private let named: [String]?

    public init(query: SearchQuery, expected: [ResourceKey], locks: [String]? = nil) {
        self.query = query
        self.expected = expected
        self.named = locks
    }
}

/// An atomic group of writes: one REST interaction or one whole transaction Bundle.
/// Either every write in it commits or none does.
public struct WriteUnit: Sendable {
    public var writes: [PreparedWrite]
    public var assumptions: [Assumption]
    /// Platform records (clients, users, one-time ids) written with the resources.
    public var records: [RecordWrite] = []
    /// Audit events appended to the hash chain in the same transaction (a unit with only these is
    /// how a read is recorded before its response).
    public var audit: [AuditRecord] = []
    /// A change-feed consumer's new position, saved atomically with the unit (the SQLite store's
    /// feed bookkeeping; not for callers outside the store).
    package var consumerPosition: (name: String, position: Int)?
    /// Read events moved from the SQLite store's spool, read by the writer where they lie (the
    /// spool's mapped segments), after `audit`.
    var spooled: SpooledEvents?

    public init(writes: [PreparedWrite], assumptions: [Assumption] = []) {
        self.writes = writes
        self.assumptions = assumptions
    }
}

/// What committing one `PreparedWrite` produced.
public struct WriteOutcome: Sendable {
    public let key: ResourceKey
    public let version: Int
    public let lastUpdated: Int64
    /// True when a create made a new resource (or an update created it).
    public let created: Bool
    /// The stored content (nil for deletes).
    public let content: [UInt8]?
    /// For deletes: false when there was nothing to delete.
    public let changed: Bool
    /// What a domain wants the writer told although the write succeeded (a recognisable prior
    /// result for a test being ordered); the HTTP layer shows them in an OperationOutcome.
    public var warnings: [Issue] = []

    public init(key: ResourceKey, version: Int, lastUpdated: Int64, created: Bool, content: [UInt8]?, changed: Bool) {
        self.key = key
        self.version = version
        self.lastUpdated = lastUpdated
        self.created = created
        self.content = content
        self.changed = changed
    }
}
