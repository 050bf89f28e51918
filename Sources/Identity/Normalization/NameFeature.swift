import Foundation

/// A person's name reduced to what matching compares: the written form (Hanzi as written, or
/// Latin letters folded to lowercase ASCII) and its pinyin with and without tones. A Latin name's
/// "pinyin" is its letters, so a romanised record (ZHANG Wei) compares with a Hanzi one (张伟).
public struct NameFeature: Sendable, Equatable {
    public var family: String
    public var given: String
    /// Toned syllables joined without spaces (zhāngwěi's parts: "zhāng", "wěi").
    public var familyPinyin: String
    public var givenPinyin: String
    public var familyToneless: String
    public var givenToneless: String
    /// Written in Han characters.
    public var isHan: Bool
    /// A newborn's placeholder name (see `placeholder(family:given:)`).
    public var isPlaceholder: Bool

    /// From FHIR HumanName parts. A Chinese full name in `family` alone (张三), or only in `text`,
    /// is split into family and given name.
    public init?(family rawFamily: String?, given rawGiven: [String], text: String?) {
        var family = Self.clean(rawFamily ?? "")
        var given = Self.clean(rawGiven.joined())
        if family.isEmpty && given.isEmpty, let text {
            let t = Self.clean(text)
            if t.allSatisfy(Pinyin.isHan) {
                (family, given) = Pinyin.splitFullName(t)
            } else {
                let words = text.split(separator: " ").map { Self.clean(String($0)) }.filter { !$0.isEmpty }
                family = words.last ?? ""
                given = words.dropLast().joined()
            }
        } else if given.isEmpty, family.count >= 2, family.count <= 4, family.allSatisfy(Pinyin.isHan) {
            (family, given) = Pinyin.splitFullName(family)
        }
        guard !family.isEmpty || !given.isEmpty else { return nil }
        self.family = family
        self.given = given
        isPlaceholder = Self.placeholder(family: family, given: given)
        isHan = (family + given).contains(where: Pinyin.isHan)
        if isHan {
            let f = Pinyin.syllables(family, asSurname: true), g = Pinyin.syllables(given)
            familyPinyin = f.joined()
            givenPinyin = g.joined()
            familyToneless = f.map(Pinyin.toneless).joined()
            givenToneless = g.map(Pinyin.toneless).joined()
        } else {
            (familyPinyin, givenPinyin, familyToneless, givenToneless) = (family, given, family, given)
        }
    }

    /// Han characters kept as written; Latin letters folded (case, accents) to ASCII; spaces,
    /// punctuation and the middle dot of transliterated names (·) dropped.
    static func clean(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            if let a = c.asciiValue {
                // The common case, without Foundation: ASCII letters lowercased, the rest dropped.
                if (a >= 65 && a <= 90) || (a >= 97 && a <= 122) { out.unicodeScalars.append(Unicode.Scalar(a | 0x20)) }
                continue
            }
            if Pinyin.isHan(c) { out.append(c); continue }
            guard c.isLetter else { continue }
            let folded = String(c).folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).lowercased()
            out += folded.filter { $0.isASCII && $0.isLetter }
        }
        return out
    }

    /// Names hospitals give a newborn before it has one (张某之子, 男婴, 新生儿, Baby Boy): not
    /// evidence of identity, so matching does not score them.
    static func placeholder(family: String, given: String) -> Bool {
        let whole = family + given
        if whole.contains("某") || whole.hasSuffix("之子") || whole.hasSuffix("之女") { return true }
        if placeholders.contains(whole) || placeholders.contains(given) { return true }
        return !family.isEmpty && placeholderGiven.contains(given)
    }

    static let placeholders: Set<String> = ["婴儿", "新生儿", "男婴", "女婴", "无名氏", "未知", "baby", "babyboy", "babygirl",
                                            "newborn", "unknown", "infant"]
    static let placeholderGiven: Set<String> = ["婴", "婴儿", "新生儿", "男婴", "女婴", "之子", "之女"]
}
