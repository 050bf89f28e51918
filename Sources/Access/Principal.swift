/// A role: what kind of user or system is acting. Scopes say which resource types and
/// interactions a token reaches; the role bounds them and decides the rules beyond scopes
/// (whose records, break-the-glass, administration).
public enum Role: String, Sendable, CaseIterable, Codable {
    /// Platform administrator: every interaction, and administration of clients and users.
    case administrator
    /// A facility's system (HIS, LIS, EMR) pushing and reading its own data (OAuth2 client).
    case facilitySystem = "facility-system"
    /// A clinician at a facility.
    case clinician
    /// An emergency clinician: may break the glass with a reason.
    case emergencyClinician = "emergency-clinician"
    /// Disease-control (CDC) staff: surveillance and statistics.
    case cdcStaff = "cdc-staff"
    /// Platform operator: connectivity and data quality, no clinical content.
    case platformOperator = "operator"
    /// A resident: only their own records (`patient/` scopes).
    case resident

    /// Roles that act for one facility and must name it: their writes are the facility's, their
    /// reads decided by whose records they are (ADR 016).
    public var actsForAFacility: Bool { [.facilitySystem, .clinician, .emergencyClinician].contains(self) }
}

/// Who is acting, as the access decision sees it: established by a verified token (or, in
/// `--dev` mode only, assumed for a request without one).
public struct Principal: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A facility system authenticated with OAuth2 client credentials.
        case client
        /// A person who logged in.
        case user
        /// `huitong serve --dev` without a token: a development administrator on loopback.
        case development
        /// The platform itself (`huitong import`, `empi rebuild`): command-line work by the operator.
        case platform
        /// Nobody: a service not yet acting for anyone, refused everything.
        case anonymous
    }

    public var kind: Kind
    /// Client id or user name.
    public var subject: String
    public var role: Role
    /// The facility (Organization id) the principal acts for, if any.
    public var facility: String?
    public var scopes: [SMARTScope]
    /// For `patient/` scopes: the resident (Patient or Person id) whose records the token reaches.
    public var patient: String?
    /// The token's id (`jti`), for audit.
    public var tokenID: String?

    public init(kind: Kind, subject: String, role: Role, facility: String? = nil, scopes: [SMARTScope],
                patient: String? = nil, tokenID: String? = nil) {
        self.kind = kind
        self.subject = subject
        self.role = role
        self.facility = facility
        self.scopes = scopes
        self.patient = patient
        self.tokenID = tokenID
    }

    /// `huitong serve --dev` without a token.
    public static let development = Principal(kind: .development, subject: "development", role: .administrator,
                                              scopes: [SMARTScope(.system, "*", .all)])
    /// Work the operator starts from the command line (import, rebuild), which holds the data folder.
    public static let platform = Principal(kind: .platform, subject: "huitong", role: .administrator,
                                           scopes: [SMARTScope(.system, "*", .all)])

    /// No one: no scopes, so every interaction is refused.
    public static let nobody = Principal(kind: .anonymous, subject: "anonymous", role: .resident, scopes: [])

    /// The permissions the scopes grant on `type` (the union over matching scopes).
    public func permissions(on type: String) -> Permissions {
        scopes.reduce(into: Permissions()) { granted, scope in
            if scope.resourceType == "*" || scope.resourceType == type { granted.formUnion(scope.permissions) }
        }
    }
}
