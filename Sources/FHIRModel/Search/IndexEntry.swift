/// A value extracted from a resource for one search parameter, stored in the
/// search index tables in the same transaction as the resource.
public enum IndexValue: Sendable, Hashable {
    /// Coding, CodeableConcept, Identifier, ContactPoint, code, boolean.
    case token(system: String?, code: String)
    /// Text normalised for case- and accent-insensitive matching, and as written (for `:exact`).
    case string(String, exact: String)
    /// A reference target on this server (`type`/`id`) or an external URL.
    case reference(type: String?, id: String?, url: String?)
    /// A date range in microseconds: [low, high).
    case date(low: Int64, high: Int64)
    case uri(String)
    /// A number (integer or decimal elements).
    case number(Double)
    /// A Quantity (or Age, Duration, Count, Distance): value with system and code (or unit text).
    case quantity(value: Double, system: String?, code: String?)
}

/// One index row: parameter name and value.
public struct IndexEntry: Sendable, Hashable {
    public let parameter: String
    public let value: IndexValue

    public init(_ parameter: String, _ value: IndexValue) {
        self.parameter = parameter
        self.value = value
    }
}
