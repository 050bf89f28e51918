import FHIRModel

/// Which stored rows a caller may see: the access decision, as data that the SQL of every read
/// applies inside the query (ADR 016). Searches and their chains and `_has`, counts, conditional
/// matches, includes, compartments and reads by id all evaluate it on each row, so a row the
/// caller may not read is never matched, counted or shown. `Access` builds it from the principal;
/// the store knows nothing of principals.
public struct ReadScope: Sendable, Hashable, CustomStringConvertible {
    public enum Reader: Sendable, Hashable {
        /// Administrators, the platform's own work, broken glass: every row.
        case everything
        /// A facility's people and systems: the facility's own records and shared records (types
        /// outside the patient compartment). With `clinical` (roles that read clinical data) also
        /// other facilities' records of residents the facility treats now (for a resident's
        /// identity records, registering them suffices), unless the resident's consent refuses it,
        /// and records in a sensitive category only where the resident opted it in. A facility
        /// `nil` (a facility role without one) has no records of its own.
        case facility(String?, clinical: Bool)
        /// A resident: records about their own Patients (ids), and shared records.
        case resident(patients: [String])
        /// Shared records only; with `demographics` also Patients, master Persons and the
        /// platform's own Tasks (the master index's review queue): platform operators.
        case shared(demographics: Bool)
    }

    public var reader: Reader
    /// The instant consent periods are judged at (microseconds), fixed per request so that a
    /// conditional match re-run under the writer's lock sees the same rows.
    public var now: Int64

    public init(reader: Reader, now: Int64) {
        self.reader = reader
        self.now = now
    }

    public static let everything = ReadScope(reader: .everything, now: 0)

    public var isEverything: Bool { reader == .everything }

    public var description: String {
        switch reader {
        case .everything: "everything"
        case .facility(let f, let clinical): "facility \(f ?? "-")\(clinical ? " clinical" : "")"
        case .resident(let patients): "resident \(patients.sorted().joined(separator: ","))"
        case .shared(let demographics): "shared\(demographics ? "+demographics" : "")"
        }
    }
}

/// What the access decision reads of one version of a record: its type, the facility that wrote
/// it, the patient it is about and its sensitive categories. The current versions carry these as
/// columns of `resource`; an older version's are worked out from its content (`vread`, history).
public struct AccessSubject: Sendable, Hashable {
    public var type: String
    public var facility: String?
    /// The Patient id whose compartment the record is in (nil: none — shared, or unattributed).
    public var compartment: String?
    /// Sensitive labels.
    public var sensitive: [String]

    public init(type: String, facility: String?, compartment: String?, sensitive: [String]) {
        self.type = type
        self.facility = facility
        self.compartment = compartment
        self.sensitive = sensitive
    }

    /// From a version's index entries, as the writer derives the columns (`WritePlanner`).
    public init(key: ResourceKey, index: [IndexEntry]) {
        let columns = AccessColumns(key: key, index: index)
        self.init(type: key.type, facility: columns.facility, compartment: columns.compartment,
                  sensitive: columns.sensitive.map { $0.split(separator: ",").map(String.init) } ?? [])
    }
}

/// The access columns of a `resource` row, derived from its index entries: the facility in its
/// `_source` (`urn:huitong:facility:<id>`), its patient compartment, its sensitive labels
/// (`_sensitive` entries) as `,A,B,`.
public struct AccessColumns: Sendable, Hashable {
    public var facility: String?
    public var compartment: String?
    public var sensitive: String?

    public static let facilityPrefix = "urn:huitong:facility:"
    /// Index entries naming the sensitive categories a record is labelled with.
    public static let sensitiveParameter = "_sensitive"
    /// Index entries naming a current treatment relationship: system = facility, code = Patient id.
    public static let careParameter = "_care"
    /// Index entries of a Consent's rules (`idx_consent`).
    public static let consentParameter = "_consent"

    public init(facility: String?, compartment: String?, sensitive: String?) {
        self.facility = facility
        self.compartment = compartment
        self.sensitive = sensitive
    }

    public init(key: ResourceKey, index: [IndexEntry]) {
        var facility: String?
        var labels: [String] = []
        var patient: String?, subject: String?
        for entry in index {
            switch entry.value {
            case .uri(let source) where entry.parameter == "_source" && facility == nil && source.hasPrefix(Self.facilityPrefix):
                facility = String(source.dropFirst(Self.facilityPrefix.count))
            case .token(_, let code) where entry.parameter == Self.sensitiveParameter:
                labels.append(code)
            case .reference(let type, let id?, _) where type == "Patient":
                if entry.parameter == "patient" && patient == nil { patient = id }
                if entry.parameter == "subject" && subject == nil { subject = id }
            default:
                continue
            }
        }
        self.facility = facility
        self.compartment = key.type == "Patient" ? key.id : (patient ?? subject)
        self.sensitive = labels.isEmpty ? nil : "," + Set(labels).sorted().joined(separator: ",") + ","
    }
}
