import Access
import FHIRModel

/// Blocking: the keys under which a record is filed so that a new record meets only the records
/// sharing one of its keys, not all ten million. Several keys, each tolerant of a different error:
/// an ID number, a phone, the family name with the birth year (either name part, so swapped names
/// meet), the given name with the birth date, the birth date with the postal code, the family name
/// with the postal code or the birth date, the full name, the house number with the postal code,
/// the birth date or the street, and a newborn's mother with the birth date. On FEBRL4 these put
/// 4,999 of the 5,000 true pairs among ~1.5 candidates per record.
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
        // Address-led keys catch records whose names and identifiers are both corrupted.
        if let house = f.address?.houseNumber {
            if let postal { keys.append("hp:" + house + "|" + postal) }
            if let date = f.birthDate { keys.append("dh:" + date + "|" + house) }
            if let street = f.address?.street { keys.append("hs:" + house + "|" + String(street.prefix(6))) }
        }
        if let name = f.primaryName {
            if let date = f.birthDate, !name.familyToneless.isEmpty { keys.append("fd:" + name.familyToneless + "|" + date) }
            if !name.familyToneless.isEmpty && !name.givenToneless.isEmpty { keys.append("fg:" + name.familyToneless + "|" + name.givenToneless) }
        }
        if let mother = f.motherID { keys.append("mom:" + mother + "|" + (f.birthDate ?? "")) }
        var seen = Set<String>()
        return keys.filter { seen.insert($0).inserted }
    }

    /// The keys as filed in the index: blinded with the identifier keyring when there is one (they
    /// hold ID and phone numbers), compared only for equality either way.
    public static func filed(_ f: PatientFeatures, protection: IdentifierProtection?) -> [String] {
        let keys = keys(f)
        guard let protection else { return keys }
        return keys.map(protection.blindKeyed)
    }

    /// The keys as index entries of the Patient (stored with it, in the same transaction).
    public static func indexEntries(_ keys: [String]) -> [IndexEntry] {
        keys.map { IndexEntry(parameter, .token(system: nil, code: $0)) }
    }
}
