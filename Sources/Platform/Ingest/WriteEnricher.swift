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
}

extension WriteEnricher {
    public func records(for write: PreparedWrite, principal: Principal) -> [RecordWrite] { [] }
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
}
