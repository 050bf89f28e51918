import FHIRModel
import Store

/// The index entries the access decision inside the query reads (ADR 016), made from a resource's
/// content on every write and by `huitong reindex`, so they change in the same transaction as
/// the facts they come from:
/// - `_sensitive`: the sensitive categories the record is labelled with (the `sensitive` column);
/// - `_care`: a current treatment relationship — an open Encounter, an active EpisodeOfCare, a
///   booked Appointment written by a facility, or an active Task owned by one — as
///   (facility, Patient id);
/// - `_consent`: the rules of an active privacy Consent (`idx_consent`).
public enum AccessIndex {
    /// Statuses in which a record means the facility treats the patient now.
    static let openStatuses: [String: Set<String>] = [
        "Encounter": ["planned", "arrived", "triaged", "in-progress", "onleave"],
        "EpisodeOfCare": ["planned", "waitlist", "active", "onhold"],
        "Appointment": ["proposed", "pending", "booked", "arrived", "checked-in"],
        "Task": ["requested", "received", "accepted", "ready", "in-progress"],
    ]

    public static func entries(for resource: JSONObject, type: String, index: [IndexEntry], sensitive: SensitiveCategories) -> [IndexEntry] {
        var out: [IndexEntry] = []
        for label in sensitive.labels(ofStored: resource).sorted() {
            out.append(IndexEntry(AccessColumns.sensitiveParameter, .token(system: SensitiveCategories.labelSystem, code: label)))
        }
        if let statuses = openStatuses[type], let status = resource["status"]?.stringValue, statuses.contains(status) {
            let facility: String?
            if type == "Task" {
                // A referral: the facility it is for (the owner) treats the patient.
                facility = Self.organization(resource["owner"]?["reference"]?.stringValue)
            } else {
                facility = AccessColumns(key: ResourceKey(type, ""), index: index).facility
            }
            if let facility {
                var patients = Set<String>()
                for entry in index where entry.parameter == "patient" || entry.parameter == "subject" {
                    if case .reference("Patient", let id?, _) = entry.value { patients.insert(id) }
                }
                for p in patients.sorted() { out.append(IndexEntry(AccessColumns.careParameter, .token(system: facility, code: p))) }
            }
        }
        if type == "Consent" {
            out += ConsentRules.rules(of: resource, index: index).map { IndexEntry(AccessColumns.consentParameter, .consent($0)) }
        }
        return out
    }

    /// The id in `Organization/<id>` (or a URL ending so).
    static func organization(_ reference: String?) -> String? {
        guard let reference else { return nil }
        let parts = reference.split(separator: "/")
        guard parts.count >= 2, parts[parts.count - 2] == "Organization" else { return nil }
        return String(parts[parts.count - 1])
    }
}

/// A privacy Consent as the rows of `idx_consent` (ADR 016): what `ConsentEvaluator` decides by
/// walking the provisions, flattened so that SQL decides the same. Each provision with a verdict
/// becomes rules for the facilities, record types and time its own and its ancestors' `actor`,
/// `class` and `period` leave (intersected; none named: `*`). Ranks follow the evaluator's order:
/// numbered depth first with a provision's nested provisions in reverse, a nested provision
/// outranks its parent and an earlier sibling a later one, so of the rules that apply the highest
/// rank is the provision the evaluator would stop at. Provisions naming security labels, and what
/// they nest, decide only their labels' opt-ins.
///
/// A Consent a facility recorded (`meta.source`) may refuse but never permit: only the resident
/// (or an administrator) opens a record to a reader or opts a sensitive category in.
public enum ConsentRules {
    struct Conditions {
        var facilities: Set<String>?   // nil: any
        var classes: Set<String>?
        var low = ConsentRule.earliest
        var high = ConsentRule.latest
        var empty: Bool { facilities?.isEmpty == true || classes?.isEmpty == true || low >= high }

        func narrowed(by provision: JSONObject) -> Conditions {
            var c = self
            let actors = provision["actor"]?.arrayValue?.compactMap { $0["reference"]?["reference"]?.stringValue } ?? []
            if !actors.isEmpty {
                let named = Set(actors.compactMap(AccessIndex.organization))
                c.facilities = c.facilities.map { $0.intersection(named) } ?? named
            }
            let classes = provision["class"]?.arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
            if !classes.isEmpty {
                c.classes = c.classes.map { $0.intersection(classes) } ?? Set(classes)
            }
            if let period = provision["period"] {
                if let start = period["start"]?.stringValue.flatMap({ FHIRDateTime.parse($0, kind: .dateTime) }) { c.low = max(c.low, start.low) }
                if let end = period["end"]?.stringValue.flatMap({ FHIRDateTime.parse($0, kind: .dateTime) }) { c.high = min(c.high, end.high) }
            }
            return c
        }
    }

    public static func rules(of consent: JSONObject, index: [IndexEntry]) -> [ConsentRule] {
        guard let root = ConsentEvaluator.privacyProvisions([consent]).first else { return [] }
        var patient: String?
        for entry in index where entry.parameter == "patient" {
            if case .reference("Patient", let id?, _) = entry.value { patient = id; break }
        }
        guard let patient else { return [] }
        let facilityRecorded = consent["meta"]?["source"]?.stringValue?.hasPrefix(AccessColumns.facilityPrefix) ?? false
        var rules: [ConsentRule] = []
        var rank = 0
        func emit(_ c: Conditions, label: String, permit: Bool, rank: Int) {
            if permit && facilityRecorded { return }
            for f in c.facilities.map({ $0.sorted() }) ?? ["*"] {
                for t in c.classes.map({ $0.sorted() }) ?? ["*"] {
                    rules.append(ConsentRule(patient: patient, facility: f, resourceClass: t, label: label, permit: permit,
                                             rank: rank, low: c.low, high: c.high))
                }
            }
        }
        func walk(_ provision: JSONObject, _ inherited: Conditions, general: Bool) {
            let c = inherited.narrowed(by: provision)
            if c.empty { return }
            let labels = (provision["securityLabel"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue }
            let verdict = provision["type"]?.stringValue
            let counts = general && labels.isEmpty
            let myRank = rank
            rank += 1
            if counts, let verdict, verdict == "permit" || verdict == "deny" {
                emit(c, label: "", permit: verdict == "permit", rank: myRank)
            }
            if let verdict, verdict == "permit" || verdict == "deny" {
                for label in Set(labels).sorted() { emit(c, label: label, permit: verdict == "permit", rank: myRank) }
            }
            let nested = (provision["provision"]?.arrayValue ?? []).compactMap(\.objectValue)
            for child in nested.reversed() { walk(child, c, general: counts) }
        }
        walk(root, Conditions(), general: true)
        return rules
    }
}
