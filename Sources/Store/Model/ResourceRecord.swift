import NIOCore

/// A resource's identity on this server: type and logical id.
public struct ResourceKey: Hashable, Sendable, CustomStringConvertible {
    public let type: String
    public let id: String

    public init(_ type: String, _ id: String) {
        self.type = type
        self.id = id
    }

    public var description: String { "\(type)/\(id)" }
}

/// One stored version of a resource, as the store returns it. `content` holds the
/// exact bytes served to clients (meta.versionId and meta.lastUpdated already set);
/// nil for a deletion.
public struct ResourceRecord: Sendable {
    public let key: ResourceKey
    public let version: Int
    /// Microseconds since the Unix epoch.
    public let lastUpdated: Int64
    public let deleted: Bool
    /// The interaction that made this version: POST, PUT, PATCH or DELETE.
    public let method: String
    public let content: ByteBuffer?

    public init(key: ResourceKey, version: Int, lastUpdated: Int64, deleted: Bool, method: String, content: ByteBuffer?) {
        self.key = key
        self.version = version
        self.lastUpdated = lastUpdated
        self.deleted = deleted
        self.method = method
        self.content = content
    }
}

/// Why a write was refused by the store. The HTTP layer maps each to a status code.
public enum StoreError: Error, Sendable, Equatable {
    /// `If-Match` named a version that is not current (412).
    case versionConflict(key: ResourceKey, expected: Int, current: Int?)
    /// A conditional interaction's search result changed between preparation and commit;
    /// the caller re-prepares and retries.
    case conditionChanged
    /// Create with an id that exists already (409).
    case alreadyExists(ResourceKey)
    /// A one-time platform record (`RecordWrite.Mode.insertNew`) exists already.
    case recordExists(kind: String, id: String)
    /// A version names a document stream that was removed as abandoned (ADR 029): its upload
    /// stood idle past the sweep's limit.
    case streamRemoved(String)
    /// The store's disk is down to its reserve: a document stream would take it (507).
    case insufficientStorage(String)
    /// A storage failure, with the engine's message.
    case storage(String)
}
