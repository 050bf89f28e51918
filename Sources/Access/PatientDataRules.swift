import FHIRModel

/// What the resident said in their `Consent`s about one reader (一使用一授权).
public enum ConsentVerdict: Sendable, Equatable {
    /// No consent speaks to this reader.
    case none
    case permit
    case deny
}

/// The facts about one resource of patient data that decide whether a facility may read it.
public struct PatientDataFacts: Sendable, Equatable {
    /// The facility that wrote it (`meta.source`); nil for data no facility wrote.
    public var sourceFacility: String?
    /// The reading facility has a current treatment relationship with the resident.
    public var treatment: Bool
    public var consent: ConsentVerdict
    /// An emergency reader broke the glass (already checked to be an emergency role).
    public var breakGlass: Bool
    /// The record is the resident's identity (a Patient or the master Person), not clinical data.
    public var demographic: Bool
    /// The reading facility has registered the resident (has its own Patient linked to them).
    public var registered: Bool
    /// The sensitive categories (security labels) the record carries.
    public var sensitive: Set<String> = []
    /// The sensitive categories the resident opted in for the reading facility.
    public var optedIn: Set<String> = []

    public init(sourceFacility: String?, treatment: Bool, consent: ConsentVerdict, breakGlass: Bool,
                demographic: Bool = false, registered: Bool = false) {
        self.sourceFacility = sourceFacility
        self.treatment = treatment
        self.consent = consent
        self.breakGlass = breakGlass
        self.demographic = demographic
        self.registered = registered
    }
}

extension AccessPolicy {
    /// Roles that read clinical data at a facility; other facilities' records need more (below).
    static let facilityReaders: Set<Role> = [.facilitySystem, .clinician, .emergencyClinician]

    /// Whether the principal's reading of patient data depends on whose data it is: people and
    /// systems of a facility. Administrators and the platform itself are not restricted this way.
    public func readsAcrossFacilities(_ principal: Principal) -> Bool {
        principal.facility != nil && principal.role != .administrator
    }

    /// History of a type or of everything mixes many residents' versions, whose totals and paging
    /// would show what a facility reader may not see: such readers ask for one resource's history.
    public func authorizeHistoryAcrossResidents(_ principal: Principal) throws(AccessDenied) {
        if readsAcrossFacilities(principal) || isResident(principal) {
            throw AccessDenied("History across residents is not available to facility readers; ask for one resource's history")
        }
    }

    /// Another facility's records about a resident need a role that reads clinical data, a current
    /// treatment relationship (for the resident's identity records, registering them suffices) and
    /// no refusal in the resident's consent — or broken glass. A facility's own records need
    /// nothing more than the scopes.
    public func mayRead(_ principal: Principal, patientData facts: PatientDataFacts) -> Bool {
        guard readsAcrossFacilities(principal) else { return true }
        if let own = principal.facility, facts.sourceFacility == own { return true }
        guard Self.facilityReaders.contains(principal.role) else { return false }
        if facts.breakGlass { return true }
        // Identity across facilities (the master Person, the resident's other registrations: what
        // PIX cross-references) for a facility that registered the resident; clinical data only
        // with a current treatment relationship. A refusal in the consent stops both.
        let relationship = facts.treatment || (facts.demographic && facts.registered)
        // Sensitive categories (GB/T 39725 level 5) additionally need the resident's opt-in.
        return relationship && facts.consent != .deny && facts.sensitive.isSubset(of: facts.optedIn)
    }

    /// Whether the principal may change (update, patch, delete) an existing record: a facility's
    /// people and systems change only what their facility wrote (another facility's records, and
    /// the platform's own, stay as their author left them); a resident only records about
    /// themselves (`own`: their Patients and master Person); administrators anything.
    public func mayChange(_ principal: Principal, sourceFacility: String?, recordPatient: String?, own: Set<String>) -> Bool {
        if isResident(principal) { return recordPatient.map(own.contains) ?? false }
        guard readsAcrossFacilities(principal) else { return true }
        return sourceFacility == principal.facility
    }
}

/// Reads the resident's R4 `Consent`s (scope `patient-privacy`, status `active`) for one reading
/// facility: a provision applies when its period holds now and its actors (if any) include the
/// facility; a nested provision that applies overrides its parent. Across consents, a refusal wins.
public enum ConsentEvaluator {
    /// The verdict for one reading facility on one record type (nil: any type; provisions limited
    /// to some types by `class` then do not apply). Provisions naming security labels only opt
    /// sensitive categories in or out (`optIns`) and do not decide here.
    public static func verdict(_ consents: [JSONObject], facility: String, type: String? = nil, now: Int64) -> ConsentVerdict {
        var result = ConsentVerdict.none
        for provision in privacyProvisions(consents) {
            switch evaluate(provision, facility: facility, type: type, now: now) {
            case .deny: return .deny
            case .permit: result = .permit
            case .none: continue
            }
        }
        return result
    }

    /// The sensitive categories (security labels) the resident opted in for this reader: labels a
    /// permit provision that applies names, less those a deny that applies names.
    public static func optIns(_ consents: [JSONObject], facility: String, type: String?, now: Int64) -> Set<String> {
        var permitted = Set<String>(), denied = Set<String>()
        func walk(_ provision: JSONObject) {
            guard applies(provision, facility: facility, type: type, now: now) else { return }
            let labels = (provision["securityLabel"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue }
            switch provision["type"]?.stringValue {
            case "permit": permitted.formUnion(labels)
            case "deny": denied.formUnion(labels)
            default: break
            }
            for case .object(let nested) in provision["provision"]?.arrayValue ?? [] { walk(nested) }
        }
        privacyProvisions(consents).forEach(walk)
        return permitted.subtracting(denied)
    }

    /// The root provisions of active `patient-privacy` consents.
    static func privacyProvisions(_ consents: [JSONObject]) -> [JSONObject] {
        consents.compactMap { consent -> JSONObject? in
            guard consent["status"]?.stringValue == "active" else { return nil }
            let scope = consent["scope"]?["coding"]?.arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
            guard scope.isEmpty || scope.contains("patient-privacy") else { return nil }
            return consent["provision"]?.objectValue
        }
    }

    /// A provision applies when its period holds now, its actors (if any) include the facility and
    /// its classes (if any) include the record's type.
    static func applies(_ provision: JSONObject, facility: String, type: String?, now: Int64) -> Bool {
        if let period = provision["period"], !holds(period, now) { return false }
        let actors = provision["actor"]?.arrayValue?.compactMap { $0["reference"]?["reference"]?.stringValue } ?? []
        if !actors.isEmpty && !actors.contains(where: { $0 == "Organization/\(facility)" || $0.hasSuffix("/Organization/\(facility)") }) {
            return false
        }
        let classes = provision["class"]?.arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
        if !classes.isEmpty && !(type.map(classes.contains) ?? false) { return false }
        return true
    }

    static func evaluate(_ provision: JSONObject, facility: String, type: String?, now: Int64) -> ConsentVerdict {
        guard applies(provision, facility: facility, type: type, now: now), provision["securityLabel"] == nil else { return .none }
        // The most specific provision that applies decides.
        for case .object(let nested) in provision["provision"]?.arrayValue ?? [] {
            let inner = evaluate(nested, facility: facility, type: type, now: now)
            if inner != .none { return inner }
        }
        switch provision["type"]?.stringValue {
        case "deny": return .deny
        case "permit": return .permit
        default: return .none
        }
    }

    static func holds(_ period: JSON, _ now: Int64) -> Bool {
        if let start = period["start"]?.stringValue.flatMap({ FHIRDateTime.parse($0, kind: .dateTime) }), now < start.low { return false }
        if let end = period["end"]?.stringValue.flatMap({ FHIRDateTime.parse($0, kind: .dateTime) }), now >= end.high { return false }
        return true
    }
}
