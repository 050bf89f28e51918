import FHIRModel

/// The access decision as SQL (ADR 016): a condition on one row that every read query — search
/// and each of its chain and `_has` subqueries, counts, conditional matches, compartments,
/// includes, reads by id — adds, so that what the caller may not read is never matched. The same
/// text runs on SQLite and PostgreSQL.
///
/// For another facility's record about a resident, it asks, over every Patient of the resident
/// (the record's Patient and those its master Person links):
/// - a current treatment relationship of the reading facility (`_care` index rows, written from
///   open Encounters, active EpisodesOfCare, booked Appointments and owned referral Tasks), or,
///   for the resident's identity records, a Patient the facility registered;
/// - no refusal in the resident's privacy Consents (`idx_consent`: of the rules of a Consent that
///   apply to this reader, record type and instant, the highest rank decides; a refusal in any
///   Consent wins);
/// - for each sensitive label the record carries, an opt-in for this reader and none withdrawn.
package struct AccessSQL: Sendable {
    /// SQL for the parts of the row the decision reads: columns of a `resource` alias, or bound
    /// values (an older version's, worked out from its content).
    package struct Subject {
        var type: (String, [SQLValue])
        var facility: (String, [SQLValue])
        var compartment: (String, [SQLValue])
        var sensitive: (String, [SQLValue])
        /// A FROM clause listing its sensitive labels as `s.code`, ending in `WHERE … ` to add to.
        var labels: (String, [SQLValue])

        package static func row(_ alias: String) -> Subject {
            Subject(type: ("\(alias).type", []), facility: ("\(alias).facility", []), compartment: ("\(alias).compartment", []),
                    sensitive: ("\(alias).sensitive", []),
                    labels: ("idx_token s WHERE s.rid = \(alias).rid AND s.param = '\(AccessColumns.sensitiveParameter)'", []))
        }

        package static func values(_ s: AccessSubject) -> Subject {
            func value(_ v: String?) -> (String, [SQLValue]) { v.map { ("CAST(? AS TEXT)", [.text($0)]) } ?? ("CAST(NULL AS TEXT)", []) }
            let sensitive = s.sensitive.isEmpty ? nil : "," + s.sensitive.sorted().joined(separator: ",") + ","
            let labels = s.sensitive.isEmpty ? ("(SELECT CAST(NULL AS TEXT) AS code) s WHERE 1 = 0", [SQLValue]())
                : ("(" + s.sensitive.map { _ in "SELECT CAST(? AS TEXT) AS code" }.joined(separator: " UNION ALL ") + ") s WHERE 1 = 1",
                   s.sensitive.map { SQLValue.text($0) })
            return Subject(type: value(s.type), facility: value(s.facility), compartment: value(s.compartment), sensitive: value(sensitive),
                           labels: labels)
        }
    }

    /// Accumulates SQL text and its parameters in order.
    struct Builder {
        var sql = ""
        var binds: [SQLValue] = []
        mutating func add(_ text: String, _ values: [SQLValue] = []) {
            sql += text
            binds += values
        }
        mutating func add(_ part: (String, [SQLValue])) { add(part.0, part.1) }
    }

    /// The types outside which every record is shared, as an SQL list of literals (fixed names of
    /// the R4 definition, never request text): the patient compartment's, `Binary`, and `Subscription` — a
    /// subscription's endpoint and headers (credentials for the receiver) are its facility's, and
    /// the operators' who watch delivery (ADR 023).
    static let patientTypeList = "(" + (R4Compartments.patientDataTypes.sorted() + ["Subscription"]).map { "'\($0)'" }.joined(separator: ",") + ")"

    /// The condition that `subject` may be read under `scope`; nil when every row may.
    /// - Parameter correlated: the rows asked about are few (reads by id, one row's check, one
    ///   resident's records): whether the reading facility treats the resident is asked of the
    ///   row's own resident (a few index lookups per row) instead of computing once every Patient
    ///   the facility treats and their linked registrations (which costs in proportion to how many
    ///   it treats: 13 ms for 5,000 on a 1M store, paid by every such statement).
    package static func condition(_ scope: ReadScope, _ subject: Subject, correlated: Bool = false) -> (sql: String, binds: [SQLValue])? {
        var b = Builder()
        func shared() { b.add("("); b.add(subject.type); b.add(" NOT IN \(patientTypeList))") }
        switch scope.reader {
        case .everything:
            return nil
        case .shared(let demographics):
            b.add("(")
            shared()
            if demographics {
                b.add(" OR "); b.add(subject.type); b.add(" IN ('Patient','Person','Subscription') OR (")
                b.add(subject.type); b.add(" = 'Task' AND "); b.add(subject.facility); b.add(" IS NULL)")
            }
            b.add(")")
        case .resident(let patients):
            b.add("(")
            shared()
            if !patients.isEmpty {
                b.add(" OR "); b.add(subject.compartment)
                b.add(" IN (" + Array(repeating: "?", count: patients.count).joined(separator: ",") + ")", patients.map { .text($0) })
            }
            b.add(")")
        case .facility(let facility, let clinical):
            guard let facility else { shared(); return (b.sql, b.binds) }
            b.add("("); b.add(subject.facility); b.add(" = ?", [.text(facility)])
            b.add(" OR "); shared()
            if clinical {
                b.add(" OR ("); b.add(subject.compartment); b.add(" IS NOT NULL AND ")
                crossFacility(&b, scope, facility, subject, correlated: correlated)
                b.add(")")
            }
            b.add(")")
        }
        return (b.sql, b.binds)
    }

    /// Every Patient of the record's resident: its own Patient and those its master Person links.
    static func resident(_ b: inout Builder, _ subject: Subject) {
        b.add("SELECT "); b.add(subject.compartment)
        b.add(" UNION SELECT l2.target_id FROM idx_reference l1 JOIN idx_reference l2 ON l2.rid = l1.rid WHERE l1.target_id = ")
        b.add(subject.compartment)
        b.add(" AND l1.target_type = 'Patient' AND l1.param = 'link' AND l1.type = 'Person' AND l2.param = 'link' AND l2.target_type = 'Patient'")
    }

    /// A consent rule row `alias` applies to this reader, record type and instant.
    static func applies(_ b: inout Builder, _ alias: String, _ scope: ReadScope, _ facility: String, _ subject: Subject) {
        b.add(" AND \(alias).facility IN (?, '*') AND \(alias).class IN (", [.text(facility)])
        b.add(subject.type)
        b.add(", '*') AND \(alias).low <= ? AND \(alias).high > ?", [.integer(Int(scope.now)), .integer(Int(scope.now))])
    }

    /// The Patients whose residents facility F treats now: its `_care` rows' Patients and every
    /// Patient their master Persons link. Uncorrelated: each query level computes it once (SQLite
    /// keeps it as an ephemeral index, PostgreSQL as a hashed subplan), so another facility's row
    /// costs one lookup to turn down.
    static func treated(_ b: inout Builder, _ facility: String) {
        let care = "FROM idx_token c WHERE c.param = '\(AccessColumns.careParameter)' AND c.system = ?"
        b.add("SELECT c.code " + care, [.text(facility)])
        b.add(" UNION SELECT l2.target_id FROM idx_token c JOIN idx_reference l1 ON l1.target_id = c.code AND l1.target_type = 'Patient'"
              + " AND l1.param = 'link' AND l1.type = 'Person' JOIN idx_reference l2 ON l2.rid = l1.rid AND l2.param = 'link'"
              + " AND l2.target_type = 'Patient' WHERE c.param = '\(AccessColumns.careParameter)' AND c.system = ?", [.text(facility)])
    }

    static func crossFacility(_ b: inout Builder, _ scope: ReadScope, _ facility: String, _ subject: Subject, correlated: Bool) {
        // A treatment relationship, or for identity records a registration; then the consent and
        // the sensitive categories.
        if correlated {
            b.add("((EXISTS (SELECT 1 FROM idx_token t WHERE t.param = '\(AccessColumns.careParameter)' AND t.system = ? AND t.code IN (",
                  [.text(facility)])
            resident(&b, subject)
            b.add(")) OR (")
        } else {
            b.add("(("); b.add(subject.compartment); b.add(" IN (")
            treated(&b, facility)
            b.add(") OR (")
        }
        b.add(subject.type); b.add(" IN ('Patient','Person') AND EXISTS (SELECT 1 FROM resource p WHERE p.type = 'Patient'"
              + " AND p.deleted = 0 AND p.facility = ? AND p.id IN (", [.text(facility)])
        resident(&b, subject)
        b.add(")))))")
        // No refusal: in no Consent is the deciding rule for this reader a deny, nor is any label
        // the record carries opted out.
        b.add(" AND NOT EXISTS (SELECT 1 FROM idx_consent c WHERE c.verdict < 0")
        applies(&b, "c", scope, facility, subject)
        b.add(" AND c.patient IN ("); resident(&b, subject)
        b.add(") AND ((c.label = '' AND NOT EXISTS (SELECT 1 FROM idx_consent d WHERE d.rid = c.rid AND d.label = '' AND d.rank > c.rank")
        applies(&b, "d", scope, facility, subject)
        b.add(")) OR (c.label <> '' AND "); b.add(subject.sensitive); b.add(" LIKE '%,' || c.label || ',%')))")
        // Sensitive categories: each one the record carries opted in for this reader.
        b.add(" AND ("); b.add(subject.sensitive); b.add(" IS NULL OR NOT EXISTS (SELECT 1 FROM "); b.add(subject.labels)
        b.add(" AND NOT EXISTS (SELECT 1 FROM idx_consent c WHERE c.label = s.code AND c.verdict > 0")
        applies(&b, "c", scope, facility, subject)
        b.add(" AND c.patient IN ("); resident(&b, subject)
        b.add("))))")
    }
}
