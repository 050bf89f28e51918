import Access
import FHIRModel
import Store

/// What a domain adds to a client's resource before it is validated (the write pipeline's stage
/// after stamping, ADR 022): the regional standard coding beside a facility's local one. It may
/// only add; the write's authorization and every later stage see the result.
public protocol WriteEnricher: Sendable {
    /// `facility`: the facility the resource comes from (its `meta.source`), nil when none;
    /// `principal`: who writes it. A refusal is thrown as an `FHIRError`.
    func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject
    /// Platform records to commit with a client's prepared write (kept beside the resource, not in it:
    /// a Subscription's owner). None by default.
    func records(for write: PreparedWrite, principal: Principal) -> [RecordWrite]
    /// Resources a domain writes with a client's prepared write, in the same unit, and warnings for
    /// the writer (an order for a test whose recognisable result exists: a DetectedIssue, a
    /// reminder, and a warning in the response). None by default.
    func companions(for write: PreparedWrite, principal: Principal) async throws -> Companions
    /// A client's whole unit before any of it is prepared, for what a domain reads across its
    /// writes (a DocumentReference's metadata from the CDA document in the Binary beside it). The
    /// requests unchanged by default; a refusal is thrown as an `FHIRError`.
    func unit(_ requests: [WriteRequest], principal: Principal) async throws -> [WriteRequest]
    /// The resource with the platform's own additions made after validation, as the sensitivity
    /// labels are (a result's HR mark, a local code's mapped standard coding); nil: none. They are
    /// built from the platform's constants and from validated stored resources (the facility's
    /// ConceptMaps), so they are valid by construction, and validating them again on every
    /// result cost a few per cent of the ingest rate (bench/sharing.py, bench/terminology.py).
    /// `resource` is the enriched one (with the additions of the enrichers before this one), with
    /// the id it is stored under. None by default.
    func finish(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject?
    /// The stored resource types this domain reads while preparing a write of `type` (any of the
    /// above), besides the stored version of the same resource; nil: not said (anything), the
    /// default. A bulk load prepares a chunk while the one before it commits only when that chunk
    /// writes none of them (`BulkImporter`), so an undeclared read costs speed, never order.
    func reads(preparing type: String) -> Set<String>?
}

/// What a domain adds to a client's write unit.
public struct Companions: Sendable {
    public var writes: [WriteRequest]
    public var warnings: [Issue]

    public init(writes: [WriteRequest] = [], warnings: [Issue] = []) {
        self.writes = writes
        self.warnings = warnings
    }

    public static let none = Companions()
}

extension WriteEnricher {
    public func records(for write: PreparedWrite, principal: Principal) -> [RecordWrite] { [] }
    public func companions(for write: PreparedWrite, principal: Principal) async throws -> Companions { .none }
    public func unit(_ requests: [WriteRequest], principal: Principal) async throws -> [WriteRequest] { requests }
    public func finish(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject? { nil }
    public func reads(preparing type: String) -> Set<String>? { nil }
}

/// Several enrichers, one after the other (each domain registers its own).
public struct EnricherChain: WriteEnricher {
    public let enrichers: [any WriteEnricher]

    public init(_ enrichers: [any WriteEnricher]) {
        self.enrichers = enrichers
    }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        var current = resource
        for enricher in enrichers { current = try await enricher.enrich(current, type: type, facility: facility, principal: principal) }
        return current
    }

    public func records(for write: PreparedWrite, principal: Principal) -> [RecordWrite] {
        enrichers.flatMap { $0.records(for: write, principal: principal) }
    }

    public func companions(for write: PreparedWrite, principal: Principal) async throws -> Companions {
        var all = Companions()
        for enricher in enrichers {
            let c = try await enricher.companions(for: write, principal: principal)
            all.writes += c.writes
            all.warnings += c.warnings
        }
        return all
    }

    public func finish(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject? {
        var current: JSONObject?
        for enricher in enrichers {
            if let next = try await enricher.finish(current ?? resource, type: type, facility: facility, principal: principal) { current = next }
        }
        return current
    }

    public func unit(_ requests: [WriteRequest], principal: Principal) async throws -> [WriteRequest] {
        var current = requests
        for enricher in enrichers { current = try await enricher.unit(current, principal: principal) }
        return current
    }

    public func reads(preparing type: String) -> Set<String>? {
        var all: Set<String> = []
        for enricher in enrichers {
            guard let reads = enricher.reads(preparing: type) else { return nil }
            all.formUnion(reads)
        }
        return all
    }
}
