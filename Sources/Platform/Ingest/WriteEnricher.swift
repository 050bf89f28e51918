import FHIRModel

/// What a domain adds to a client's resource before it is validated (the write pipeline's stage
/// after stamping, ADR 022): the regional standard coding beside a facility's local one. It may
/// only add; the write's authorization and every later stage see the result.
public protocol WriteEnricher: Sendable {
    /// `facility`: the facility the resource comes from (its `meta.source`), nil when none.
    func enrich(_ resource: JSONObject, type: String, facility: String?) async throws -> JSONObject
}
