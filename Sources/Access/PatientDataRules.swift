import FHIRModel

/// What the resident said in their `Consent`s about one reader (一使用一授权).
public enum ConsentVerdict: Sendable, Equatable {
    /// No consent speaks to this reader.
    case none
    case permit
    case deny
}

extension AccessPolicy {
    /// History of a type or of everything mixes many residents' versions, whose totals and paging
    /// would show what a restricted reader may not see: only administrators (and the platform) list
    /// it; everyone else asks for one resource's history, decided version by version.
    public func authorizeHistoryAcrossResidents(_ principal: Principal) throws(AccessDenied) {
        if principal.role != .administrator {
            throw AccessDenied("History across residents is for administrators; ask for one resource's history")
        }
    }

    /// Whether the principal may change (update, patch, delete) an existing record: a facility's
    /// people and systems change only what their facility wrote (another facility's records, and
    /// the platform's own, stay as their author left them); a resident only records about
    /// themselves (`own`: their Patients and master Person); administrators anything.
    public func mayChange(_ principal: Principal, sourceFacility: String?, recordPatient: String?, own: Set<String>) -> Bool {
        if isResident(principal) { return recordPatient.map(own.contains) ?? false }
        if principal.role == .administrator { return true }
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
