import FHIRModel

/// Blocking: the keys under which a record is filed so that a new record meets only the records
/// sharing one of its keys, not all ten million. Several keys, each tolerant of a different error:
/// an ID number, a phone, the family name with the birth year (either name part, so swapped names
/// meet), the given name with the birth date, the birth date with the postal code, the family name
/// with the postal code, and a newborn's mother with the birth date.
public enum BlockingKeys {
    /// The search parameter (token) the keys are indexed under on Patient.
    public static let parameter = "huitong-empi-block"

    public static func keys(_ f: PatientFeatures) -> [String] {
        var keys: [String] = []
        if let id = f.residentID { keys.append("rid:" + id.value) }
        for identifier in f.identifiers { keys.append("idf:" + identifier) }
        for phone in f.phones { keys.append("tel:" + phone) }
        let postal = f.address?.postalCode
        if let name = f.primaryName {
            if let year = f.birthYear {
                if !name.familyToneless.isEmpty { keys.append("ny:" + name.familyToneless + "|" + year) }
                if !name.givenToneless.isEmpty { keys.append("ny:" + name.givenToneless + "|" + year) }
            }
            if let date = f.birthDate, !name.givenToneless.isEmpty { keys.append("gd:" + name.givenToneless + "|" + date) }
            if let postal, !name.familyToneless.isEmpty { keys.append("fp:" + name.familyToneless + "|" + postal) }
        }
        if let date = f.birthDate, let postal { keys.append("dp:" + date + "|" + postal) }
        if let mother = f.motherID { keys.append("mom:" + mother + "|" + (f.birthDate ?? "")) }
        var seen = Set<String>()
        return keys.filter { seen.insert($0).inserted }
    }

    /// The keys as index entries of the Patient (stored with it, in the same transaction).
    public static func indexEntries(_ f: PatientFeatures) -> [IndexEntry] {
        keys(f).map { IndexEntry(parameter, .token(system: nil, code: $0)) }
    }
}
