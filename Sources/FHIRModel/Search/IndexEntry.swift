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
    /// A rule of a privacy Consent (not a search parameter: the access decision reads it).
    case consent(ConsentRule)
    /// A concept of a CodeSystem (not a search parameter: the terminology service reads it).
    case concept(ConceptEntry)
    /// `code` is `ancestor` or lies below it in the hierarchy of code system `system` (every pair
    /// of the transitive closure, each code with itself too): subsumption is one index lookup.
    case closure(system: String, ancestor: String, code: String)
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

/// One rule of a resident's privacy `Consent`, flattened for the access decision inside the query
/// (`idx_consent`, ADR 016): a provision with its ancestors' conditions folded in. A rule applies
/// to a reader (facility, or `*` for any), a record type (or `*`) and an instant in
/// `[low, high)`. Rules without a label decide whether the resident refuses the reader: of those
/// that apply, the one with the highest `rank` in a Consent decides it. Rules with a label opt a
/// sensitive category in (`permit`) or out for that reader.
public struct ConsentRule: Sendable, Hashable {
    /// The id of the Patient the Consent is about.
    public var patient: String
    public var facility: String
    public var resourceClass: String
    /// "" for the general verdict, else a sensitive category's label.
    public var label: String
    public var permit: Bool
    public var rank: Int
    public var low: Int64
    public var high: Int64

    public init(patient: String, facility: String, resourceClass: String, label: String, permit: Bool, rank: Int, low: Int64, high: Int64) {
        self.patient = patient
        self.facility = facility
        self.resourceClass = resourceClass
        self.label = label
        self.permit = permit
        self.rank = rank
        self.low = low
        self.high = high
    }

    /// Bounds of "always" (microseconds; well inside 64 bits on both stores).
    public static let earliest: Int64 = -(1 << 60)
    public static let latest: Int64 = 1 << 60
}

/// One concept of a stored CodeSystem, as the terminology service looks it up (`idx_concept`):
/// the system's canonical URL and version, the code, its display, and the rest (designations,
/// properties, parents, status) as compact JSON in `detail`.
public struct ConceptEntry: Sendable, Hashable {
    public var system: String
    public var version: String
    public var code: String
    public var display: String?
    /// A JSON object: `designation`, `property`, `parent`, `inactive` (see `ConceptIndex`).
    public var detail: String

    public init(system: String, version: String, code: String, display: String?, detail: String) {
        self.system = system
        self.version = version
        self.code = code
        self.display = display
        self.detail = detail
    }
}
