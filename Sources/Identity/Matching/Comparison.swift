/// The fields Fellegi–Sunter scoring compares, each with ordered levels from most to least
/// similar. A pair falls into the first level whose test holds; a field missing on either side
/// falls into none and adds nothing to the score.
public enum ComparisonField: String, CaseIterable, Codable, Sendable {
    case residentID, identifier, family, given, birthDate, gender, phone, postalCode, city, street, houseNumber, motherID

    /// Level names, most similar first; the last level is "different".
    public var levels: [String] {
        switch self {
        case .residentID, .identifier: ["exact", "typo", "different"]
        case .family, .given: ["exact", "pinyin", "toneless", "jw92", "jw80", "different"]
        case .birthDate: ["exact", "transposed", "oneDigit", "yearMonth", "different"]
        case .gender, .houseNumber, .motherID, .phone: ["exact", "different"]
        case .postalCode: ["exact", "oneDigit", "different"]
        case .city: ["exact", "jw90", "different"]
        case .street: ["exact", "jw90", "jw70", "different"]
        }
    }
}

/// The comparison of two records: a level per field present on both sides, and the name values
/// compared (for term-frequency adjustment).
public struct PairComparison: Sendable, Equatable {
    public var levels: [ComparisonField: Int] = [:]
    /// The toneless family and given names, when they agree exactly (for term-frequency adjustment).
    public var family: String?
    public var given: String?
    /// The given names are different names, not one name written two ways: Han names that do not
    /// read alike (a different syllable: 子涵 and 子轩).
    public var givenNamesDiffer = false
}

/// Compares two sets of features field by field.
public enum Comparator {
    public static func compare(_ a: PatientFeatures, _ b: PatientFeatures) -> PairComparison {
        var result = PairComparison()
        // Resident ID: a typo (one character, or two neighbours swapped) in a number that then fails
        // its check digit is still strong evidence; two different valid numbers are strong against.
        let idA = a.residentID?.value ?? a.invalidResidentID, idB = b.residentID?.value ?? b.invalidResidentID
        if let idA, let idB { result.levels[.residentID] = idA == idB ? 0 : (nearMiss(idA, idB) ? 1 : 2) }
        // Other identifiers of the same system.
        var best: Int?
        let systemsA = Dictionary(a.identifiers.map(splitIdentifier), uniquingKeysWith: { x, _ in x })
        for (system, valueB) in b.identifiers.map(splitIdentifier) {
            guard let valueA = systemsA[system] else { continue }
            let level = valueA == valueB ? 0 : (nearMiss(valueA, valueB) ? 1 : 2)
            best = min(best ?? level, level)
        }
        if let best { result.levels[.identifier] = best }
        compareNames(a, b, into: &result)
        if let da = a.birthDate, let db = b.birthDate { result.levels[.birthDate] = dateLevel(da, db) }
        if let ga = a.gender, let gb = b.gender, ga != "unknown", gb != "unknown" { result.levels[.gender] = ga == gb ? 0 : 1 }
        if !a.phones.isEmpty && !b.phones.isEmpty { result.levels[.phone] = a.phones.isDisjoint(with: b.phones) ? 1 : 0 }
        if let pa = a.address?.postalCode, let pb = b.address?.postalCode {
            result.levels[.postalCode] = pa == pb ? 0 : (pa.count == pb.count && differences(pa, pb) == 1 ? 1 : 2)
        }
        if let ca = a.address?.city, let cb = b.address?.city {
            result.levels[.city] = ca == cb ? 0 : (JaroWinkler.similarity(ca, cb) >= 0.9 ? 1 : 2)
        }
        if let sa = a.address?.street, let sb = b.address?.street {
            let jw = sa == sb ? 1 : JaroWinkler.similarity(sa, sb)
            result.levels[.street] = jw == 1 ? 0 : (jw >= 0.9 ? 1 : (jw >= 0.7 ? 2 : 3))
        }
        if let ha = a.address?.houseNumber, let hb = b.address?.houseNumber { result.levels[.houseNumber] = ha == hb ? 0 : 1 }
        if let ma = a.motherID, let mb = b.motherID { result.levels[.motherID] = ma == mb ? 0 : 1 }
        return result
    }

    /// Whether a pair agrees on something beyond names and dates: an identifier (or a one-character
    /// typo of it), a phone, a newborn's mother, or the street (with its house number and postal code).
    public static func corroborates(_ c: PairComparison) -> Bool {
        func level(_ f: ComparisonField) -> Int? { c.levels[f] }
        if let l = level(.residentID), l <= 1 { return true }
        if let l = level(.identifier), l <= 1 { return true }
        if level(.phone) == 0 || level(.motherID) == 0 { return true }
        if let l = level(.street), l <= 1 { return true }
        return level(.houseNumber) == 0 && level(.postalCode) == 0
    }

    /// Whether two records may be two members of one family (twins, siblings) rather than one
    /// person: they share surname, household and perhaps birth date, but their given names are
    /// different names, or their genders differ. Phone, address and a family name then say nothing
    /// about identity, and a resident ID number one digit from the other's says little (twins'
    /// numbers differ only in the sequence code): only the same resident ID number or person-level
    /// identifier may link them automatically.
    public static func mayBeRelatives(_ c: PairComparison) -> Bool {
        if c.levels[.residentID] == 0 || c.levels[.identifier] == 0 { return false }
        return c.givenNamesDiffer || c.levels[.gender] == 1
    }

    static func splitIdentifier(_ s: String) -> (String, String) {
        let parts = s.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
        return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }

    /// Family and given name over the best pair of names and the better of the two orientations
    /// (family and given swapped is a common registration error).
    static func compareNames(_ a: PatientFeatures, _ b: PatientFeatures, into result: inout PairComparison) {
        let namesA = a.names.filter { !$0.isPlaceholder }, namesB = b.names.filter { !$0.isPlaceholder }
        var best: (score: Int, family: Int?, given: Int?, fv: String?, gv: String?)?
        for na in namesA {
            for nb in namesB {
                for swapped in [false, true] {
                    let fb = swapped ? swap(nb) : nb
                    let f = nameLevel(na.family, na.familyPinyin, na.familyToneless, fb.family, fb.familyPinyin, fb.familyToneless)
                    let g = nameLevel(na.given, na.givenPinyin, na.givenToneless, fb.given, fb.givenPinyin, fb.givenToneless)
                    // Lower levels are better; a missing part counts as middling. Swapping costs a little.
                    let score = (f ?? 3) + (g ?? 3) + (swapped ? 1 : 0)
                    if best == nil || score < best!.score {
                        best = (score, f, g, f == 0 ? na.familyToneless : nil, g == 0 ? na.givenToneless : nil)
                    }
                }
            }
        }
        guard let best else { return }
        if let f = best.family { result.levels[.family] = f; result.family = best.fv }
        if let g = best.given {
            result.levels[.given] = g
            result.given = best.gv
            // Han names agree only when they read alike (a wrong pick of a pinyin input method).
            // Latin-script names are not judged so: their typos and variant spellings (Jon, John,
            // Jonathon; FEBRL's corruptions) cannot be told from another name by the letters.
            let han = namesA.contains(where: \.isHan) && namesB.contains(where: \.isHan)
            result.givenNamesDiffer = han && g >= 3
        }
    }

    static func swap(_ n: NameFeature) -> NameFeature {
        var s = n
        (s.family, s.given) = (n.given, n.family)
        (s.familyPinyin, s.givenPinyin) = (n.givenPinyin, n.familyPinyin)
        (s.familyToneless, s.givenToneless) = (n.givenToneless, n.familyToneless)
        return s
    }

    /// exact, pinyin (same syllables and tones: a homophone), toneless, Jaro-Winkler ≥ 0.92, ≥ 0.80, different.
    static func nameLevel(_ a: String, _ ap: String, _ at: String, _ b: String, _ bp: String, _ bt: String) -> Int? {
        if a.isEmpty || b.isEmpty { return nil }
        if a == b { return 0 }
        if ap == bp && !ap.isEmpty { return 1 }
        if at == bt && !at.isEmpty { return 2 }
        let jw = JaroWinkler.similarity(at, bt)
        if jw >= 0.92 { return 3 }
        if jw >= 0.80 { return 4 }
        return 5
    }

    /// exact, transposed (day and month swapped, or two neighbouring digits), one digit off,
    /// same year and month, different. Partial dates compare on what both have.
    static func dateLevel(_ a: String, _ b: String) -> Int {
        if a == b { return 0 }
        let da = a.filter(\.isASCIIDigit), db = b.filter(\.isASCIIDigit)
        guard da.count == 8 && db.count == 8 else {
            let n = min(da.count, db.count)
            return n >= 6 && da.prefix(n) == db.prefix(n) ? 3 : (n == 4 && da.prefix(4) == db.prefix(4) ? 3 : 4)
        }
        let ca = Array(da), cb = Array(db)
        if ca[0..<4] == cb[0..<4] && ca[4..<6] == cb[6..<8] && ca[6..<8] == cb[4..<6] { return 1 }
        if isAdjacentTransposition(ca, cb) { return 1 }
        if differences(da, db) == 1 { return 2 }
        if ca[0..<6] == cb[0..<6] { return 3 }
        return 4
    }

    /// One character different, or two neighbours swapped (equal length).
    static func nearMiss(_ a: String, _ b: String) -> Bool {
        guard a.count == b.count else { return false }
        return differences(a, b) == 1 || isAdjacentTransposition(Array(a), Array(b))
    }

    static func differences(_ a: String, _ b: String) -> Int {
        zip(a, b).reduce(0) { $0 + ($1.0 == $1.1 ? 0 : 1) } + abs(a.count - b.count)
    }

    static func isAdjacentTransposition(_ a: [Character], _ b: [Character]) -> Bool {
        guard a.count == b.count else { return false }
        let diffs = a.indices.filter { a[$0] != b[$0] }
        return diffs.count == 2 && diffs[1] == diffs[0] + 1 && a[diffs[0]] == b[diffs[1]] && a[diffs[1]] == b[diffs[0]]
    }
}
