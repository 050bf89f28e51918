import FHIRModel

/// A search as conditional interactions use it: clauses are ANDed, the values of a
/// clause ORed. Values are matched with the index's exact semantics.
public struct ConditionalQuery: Sendable, Equatable {
    public enum Match: Sendable, Equatable {
        /// `_id`
        case id(String)
        /// token: `code` (any system), `system|code`, `|code` (no system: system ""), `system|` (code nil).
        case token(system: String?, code: String?)
        /// string: normalised starts-with.
        case stringPrefix(String)
        /// reference to `type/id` (type nil: any type).
        case reference(type: String?, id: String)
        case uri(String)
    }

    public struct Clause: Sendable, Equatable {
        public let parameter: String
        public let values: [Match]

        public init(parameter: String, values: [Match]) {
            self.parameter = parameter
            self.values = values
        }
    }

    public let type: String
    public let clauses: [Clause]

    public init(type: String, clauses: [Clause]) {
        self.type = type
        self.clauses = clauses
    }
}
