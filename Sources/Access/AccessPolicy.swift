import FHIRModel
import Store

/// What a request does, as the access decision sees it.
public enum Interaction: Sendable, Hashable, CustomStringConvertible {
    case read, vread, history, search, create, update, patch, delete
    /// Create with `If-None-Exist`: a search and a create.
    case conditionalCreate
    /// `PUT /Type?query`: a search and an update (or a create).
    case conditionalUpdate
    /// `DELETE /Type?query`: a search and a delete.
    case conditionalDelete
    /// History of every type (`GET /_history`).
    case systemHistory
    /// A transaction or batch Bundle (its entries are decided one by one; for the audit event).
    case transaction
    /// A named operation (`match`, `everything`, `ihe-pix`, `empi-link`, ...).
    case operation(String)

    /// The kind of interaction, for the role rules: read, vread, search, history, or a write.
    var restfulKind: String {
        switch self {
        case .read: "read"
        case .vread: "vread"
        case .search: "search"
        case .history: "history"
        default: "write"
        }
    }

    public var description: String {
        switch self {
        case .read: "read"
        case .vread: "vread"
        case .history: "history"
        case .search: "search"
        case .create: "create"
        case .update: "update"
        case .patch: "patch"
        case .delete: "delete"
        case .conditionalCreate: "conditional create"
        case .conditionalUpdate: "conditional update"
        case .conditionalDelete: "conditional delete"
        case .systemHistory: "history of all types"
        case .transaction: "transaction"
        case .operation(let name): "$" + name
        }
    }

    /// The SMART permissions the interaction needs on its resource type.
    var needs: Permissions {
        switch self {
        case .read, .vread: return .read
        case .history: return .read
        case .search: return .search
        case .systemHistory: return [.read, .search]
        case .transaction: return []
        case .create: return .create
        case .update, .patch: return .update
        case .delete: return .delete
        case .conditionalCreate: return [.create, .search]
        case .conditionalUpdate: return [.update, .search]
        case .conditionalDelete: return [.delete, .search]
        case .operation(let name): return Self.operationNeeds[name] ?? .all
        }
    }

    /// Operations and what they need on the type they are invoked on. An operation not listed
    /// needs every permission (so a new operation is closed until it is listed here).
    static let operationNeeds: [String: Permissions] = [
        "match": .search, "ihe-pix": [.read, .search], "everything": .read,
        // Whether content would be accepted: nothing of the store is shown (its modes ask the write's own decision).
        "validate": [],
        "empi-link": .update, "empi-not-match": .update, "empi-unlink": .update, "empi-merge": .update, "empi-unmerge": .update,
        // E-health cards, on the master Person they are issued for (`HealthCardService`).
        "card-read": .read, "card-qr": .read, "card-verify": .read,
        // The HL7 gateway's kept rejected messages (`/hl7/rejected`), not of one type.
        "hl7-rejected": .read,
        "card-issue": [.read, .update], "card-suspend": .update, "card-resume": .update, "card-cancel": .update, "card-reissue": .update,
        // The region's recognition lists (互认), on its catalogue CodeSystem.
        "load-catalogue": .update, "load-qc": .update,
    ]
}

/// Why a request was refused (HTTP 403).
public struct AccessDenied: Error, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}

/// The access decision (DESIGN.md §1): every read and write — interactions, searches with their
/// `_include`s, chains and `_has`, history, `$everything`, operations, transaction entries —
/// asks this one type. It answers from the principal's scopes and role; treatment relationships,
/// the resident's consent and sensitive categories join it here.
public struct AccessPolicy: Sendable {
    public init() {}

    /// Roles that read the whole audit trail.
    static let auditReaders: Set<Role> = [.administrator, .platformOperator]

    /// Roles that may work on the master patient index's review queue.
    static let indexStewards: Set<Role> = [.administrator, .platformOperator]
    static let registeredTerminology: Set<String> = ["CodeSystem", "ValueSet", "NamingSystem"]
    /// Loads of the region's recognition catalogue and QC passes (互认): administrators, as terminology.
    static let regionalListOperations: Set<String> = ["load-catalogue", "load-qc"]
    static let stewardOperations: Set<String> = ["empi-link", "empi-not-match", "empi-unlink", "empi-merge", "empi-unmerge"]

    /// E-health card operations: by facilities and administrators; a resident reads, shows
    /// (QR) and reports the loss of their own card (which card is theirs is checked per card).
    static let cardOperations: Set<String> = ["card-read", "card-qr", "card-verify", "card-issue", "card-suspend",
                                              "card-resume", "card-cancel", "card-reissue"]
    static let cardRoles: Set<Role> = [.administrator, .facilitySystem, .clinician, .emergencyClinician, .resident]
    static let residentCardOperations: Set<String> = ["card-read", "card-qr", "card-suspend"]

    /// Whether `principal` sees a Subscription of `facility` as written; anyone else (an operator
    /// watching delivery) sees its channel's secrets and its criteria's values masked (ADR 023).
    /// Whoever may change it sees it as written (so a masked form is never what is sent back).
    public func seesSubscription(_ principal: Principal, facility: String?) -> Bool {
        mayChange(principal, sourceFacility: facility, recordPatient: nil, own: [])
    }

    /// Search parameters (and sorts) that would find a Subscription by what is masked for the
    /// searcher: its criteria, its endpoint. Only a facility's own people and systems (who see no
    /// other facility's Subscriptions) and administrators search by them.
    public func authorizeSearchParameters(_ principal: Principal, type: String, _ parameters: [String]) throws(AccessDenied) {
        guard type == "Subscription", principal.role != .administrator, principal.facility == nil || isResident(principal),
              let hidden = parameters.first(where: { ["criteria", "url"].contains($0) }) else { return }
        throw AccessDenied("A Subscription's \(hidden) is its facility's own (shown masked to \(principal.role.rawValue)): "
                           + "search and sort Subscriptions by status or type")
    }

    /// Refuses `interaction` on `type` (nil: every type, as system history) unless allowed.
    public func authorize(_ principal: Principal, _ interaction: Interaction, _ type: String?) throws(AccessDenied) {
        if case .operation(let name) = interaction, Self.stewardOperations.contains(name), !Self.indexStewards.contains(principal.role) {
            throw AccessDenied("$\(name) is for the master index's reviewers (role administrator or operator), not \(principal.role.rawValue)")
        }
        if case .operation("hl7-rejected") = interaction, !Self.indexStewards.contains(principal.role) {
            throw AccessDenied("Rejected HL7 messages are read by administrators and operators, not \(principal.role.rawValue)")
        }
        if case .operation(let name) = interaction, Self.cardOperations.contains(name), !Self.cardRoles.contains(principal.role) {
            throw AccessDenied("E-health cards are issued and verified by facilities, not by role \(principal.role.rawValue)")
        }
        if isResident(principal) {
            // A resident reads their own records (which ones is decided per record, with the
            // master index) and writes only their own Consents.
            guard principal.patient != nil else { throw AccessDenied("A patient/ token must name its resident (patient)") }
            switch interaction {
            case .read, .vread, .history, .search, .operation("everything"): break
            case .create where type == "Consent", .update where type == "Consent": break
            // Marking a message to them read (`received`, status); what else may change is
            // checked on the record (ReadReceipts, ADR 023).
            case .update where type == "Communication": break
            case .operation(let name) where Self.residentCardOperations.contains(name):
                // Their own card (checked per card): reading their record is the permission it needs.
                guard principal.permissions(on: "Person").contains(.read) else {
                    throw AccessDenied("The token's scopes do not allow reading the resident's own record (Person)")
                }
                return
            default: throw AccessDenied("A resident may read their own records, manage their own Consents and mark their messages read, not \(interaction) on \(type ?? "all types")")
            }
        }
        if type == "AuditEvent", !Self.auditReaders.contains(principal.role), !isResident(principal) {
            throw AccessDenied("The audit trail is read by administrators and operators, and by residents (their own records)")
        }
        try authorizeRole(principal, interaction, type)
        let needed = interaction.needs
        let granted = principal.permissions(on: type ?? "*")
        guard granted.isSuperset(of: needed) else {
            let what = type ?? "all types"
            throw AccessDenied("The token's scopes do not allow \(interaction) on \(what) (needs \(what).\(needed.letters), "
                               + "granted \(granted.isEmpty ? "nothing" : granted.letters))")
        }
    }

    /// The rows the principal may read, as the SQL of every read applies them (ADR 016).
    /// - Parameters:
    ///   - breakGlass: an emergency reader broke the glass (already checked to be allowed).
    ///   - residentPatients: for a resident, the ids of their own Patients (through the master index).
    public func readScope(_ principal: Principal, breakGlass: Bool, residentPatients: [String], now: Int64) -> ReadScope {
        let reader: ReadScope.Reader
        if principal.role == .administrator || breakGlass {
            reader = .everything
        } else if isResident(principal) {
            reader = .resident(patients: residentPatients.sorted())
        } else {
            switch principal.role {
            case .facilitySystem, .clinician, .emergencyClinician: reader = .facility(principal.facility, clinical: true)
            case .platformOperator: reader = .shared(demographics: true)
            case .cdcStaff, .resident, .administrator: reader = .shared(demographics: false)
            }
        }
        return ReadScope(reader: reader, now: now)
    }

    /// What a role allows whatever its scopes grant (a scope never grants more than the role):
    /// platform operators see connectivity, counts and data quality — no clinical records, only the
    /// master index's identity records and review queue, read-only; CDC staff read cases through
    /// the public-health functions, not through FHIR reads of patient data.
    func authorizeRole(_ principal: Principal, _ interaction: Interaction, _ type: String?) throws(AccessDenied) {
        // The region's code systems and value sets are registered by administrators (术语注册):
        // every facility's searches and validation read them. Facilities map their own local codes
        // with ConceptMaps they write.
        if let type, Self.registeredTerminology.contains(type), principal.role != .administrator, interaction.restfulKind == "write" {
            if case .operation(let name) = interaction {
                if Self.regionalListOperations.contains(name) {
                    throw AccessDenied("$\(name): the region's recognition lists are loaded by administrators, not \(principal.role.rawValue)")
                }
            } else {
                throw AccessDenied("\(type)s are registered by administrators (术语注册); a facility maps its local codes with a ConceptMap")
            }
        }
        let clinical = type.map { R4Compartments.patientDataTypes.contains($0) && $0 != "AuditEvent" } ?? true
        switch principal.role {
        case .resident where !isResident(principal):
            throw AccessDenied("A resident acts with patient/ scopes, on their own records")
        case .platformOperator where clinical:
            if case .operation(let name) = interaction, Self.stewardOperations.contains(name) || name == "hl7-rejected" { return }
            let reads: Set<String> = ["read", "vread", "search", "history"]
            guard let type, ["Patient", "Person", "Task"].contains(type), reads.contains(interaction.restfulKind) else {
                throw AccessDenied("Operators see no clinical content (connectivity, counts and data quality only): "
                                   + "not \(interaction) on \(type ?? "all types")")
            }
        case .cdcStaff where clinical:
            throw AccessDenied("CDC staff read case data through the public-health functions, not \(interaction) on \(type ?? "all types")")
        default:
            return
        }
    }

    /// A resident acting for themselves (`patient/` scopes).
    public func isResident(_ principal: Principal) -> Bool {
        principal.role != .administrator && principal.scopes.contains { $0.context == .patient }
    }

    /// The resource types of the R4 Patient compartment (compartmentdefinition-patient): data about a patient.
    public static var patientCompartmentTypes: Set<String> { R4Compartments.patientTypes }

    /// Roles that may break the glass (`X-Break-Glass-Reason`): override a refusal in an emergency,
    /// audited with the reason and shown to the resident.
    static let emergencyRoles: Set<Role> = [.emergencyClinician]

    public func authorizeBreakGlass(_ principal: Principal) throws(AccessDenied) {
        guard Self.emergencyRoles.contains(principal.role) else {
            throw AccessDenied("Break-the-glass is for emergency roles (emergency-clinician), not \(principal.role.rawValue)")
        }
    }

    /// Whether the principal sees a record's resident ID and phone numbers in clear
    /// (`IdentifierProtection`); everyone else sees them masked. In clear: the facility that wrote
    /// the record, the resident in their own records (of patient-data types, which they read only
    /// when their own; not a Practitioner's), an administrator and the platform's own work.
    /// Another facility's clinicians — even treating ones, even breaking the glass — identify the
    /// resident by the masked number, the name and the birth date.
    public func seesIdentifiers(_ principal: Principal, type: String, sourceFacility: String?) -> Bool {
        if principal.role == .administrator { return true }
        if isResident(principal) { return Self.patientCompartmentTypes.contains(type) }
        guard let own = principal.facility else { return false }
        return own == sourceFacility
    }

    /// Whether `type` may appear in a response to the principal (an `_include`, a resource in
    /// `$everything`, an entry of a history Bundle): it needs read access to that type.
    public func mayRead(_ principal: Principal, _ type: String) -> Bool {
        (try? authorize(principal, .read, type)) != nil
    }

    /// Whether the principal may create resources of `type`.
    public func mayWrite(_ principal: Principal, _ type: String) -> Bool {
        (try? authorize(principal, .create, type)) != nil
    }
}
