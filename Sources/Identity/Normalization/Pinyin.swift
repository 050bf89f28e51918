import Foundation
import Synchronization

/// Hanzi → Hanyu Pinyin, one syllable per character. Foundation's ICU transform gives each
/// character its most common reading; surnames read differently (单 shàn, not dān) come from
/// `surnameReadings`. Toneless forms keep ü distinct as `v` (吕 lǚ → "lv", 卢 lú → "lu").
public enum Pinyin {
    /// Readings of polyphonic characters when they are a surname (the transform's default is wrong).
    static let surnameReadings: [Character: String] = [
        "单": "shàn", "曾": "zēng", "解": "xiè", "区": "ōu", "仇": "qiú", "朴": "piáo", "查": "zhā", "覃": "qín",
        "盖": "gě", "乐": "yuè", "员": "yùn", "纪": "jǐ", "缪": "miào", "翟": "zhái", "繁": "pó", "秘": "bì",
        "种": "chóng", "黑": "hè", "洗": "xiǎn", "冼": "xiǎn", "燕": "yān", "任": "rén", "华": "huà", "谌": "chén",
        "禚": "zhuó", "召": "shào", "句": "gōu", "费": "fèi", "雍": "yōng", "宓": "fú", "沈": "shěn", "折": "shé",
        "那": "nā", "相": "xiàng", "过": "guō", "莘": "shēn", "隗": "wěi", "尉": "yù", "万": "wàn", "阚": "kàn",
        "都": "dū", "长": "cháng", "石": "shí", "薄": "bó", "柏": "bǎi", "广": "guǎng", "能": "nài", "郇": "huán",
    ]

    /// Compound surnames (复姓), whose two characters are the family name.
    static let compoundSurnames: Set<String> = [
        "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "令狐", "夏侯",
        "轩辕", "独孤", "南宫", "西门", "端木", "百里", "呼延", "公羊", "澹台", "万俟", "闻人", "赫连", "钟离", "申屠",
    ]

    /// Readings of a compound surname's characters (长孙 zhǎng sūn, 万俟 mò qí, 尉迟 yù chí).
    static let compoundReadings: [String: [String]] = [
        "长孙": ["zhǎng", "sūn"], "万俟": ["mò", "qí"], "尉迟": ["yù", "chí"], "单于": ["chán", "yú"],
    ]

    private static let cache = Mutex<[Character: String]>([:])

    /// Whether `c` is a CJK unified ideograph (the basic block and extension A).
    public static func isHan(_ c: Character) -> Bool {
        guard let s = c.unicodeScalars.first, c.unicodeScalars.count == 1 else { return false }
        return (0x4E00...0x9FFF).contains(s.value) || (0x3400...0x4DBF).contains(s.value)
    }

    /// Toned syllables, one per Han character; other characters are skipped.
    public static func syllables(_ text: String, asSurname: Bool = false) -> [String] {
        if asSurname, let compound = compoundReadings[text] { return compound }
        var result: [String] = []
        for (i, c) in text.enumerated() where isHan(c) {
            if asSurname && i == 0, let reading = surnameReadings[c], !compoundSurnames.contains(String(text.prefix(2))) {
                result.append(reading)
            } else {
                result.append(reading(c))
            }
        }
        return result
    }

    /// The transform's reading of one character, cached (the transform costs ~30 µs a call).
    static func reading(_ c: Character) -> String {
        if let cached = cache.withLock({ $0[c] }) { return cached }
        let r = String(c).applyingTransform(.mandarinToLatin, reverse: false)?.lowercased() ?? String(c)
        cache.withLock { $0[c] = r }
        return r
    }

    /// A syllable without tone marks, ü written `v`.
    public static func toneless(_ syllable: String) -> String {
        var out = ""
        for scalar in syllable.unicodeScalars {
            switch scalar {
            case "ü", "ǖ", "ǘ", "ǚ", "ǜ": out.append("v")
            case "ā", "á", "ǎ", "à": out.append("a")
            case "ē", "é", "ě", "è": out.append("e")
            case "ī", "í", "ǐ", "ì": out.append("i")
            case "ō", "ó", "ǒ", "ò": out.append("o")
            case "ū", "ú", "ǔ", "ù": out.append("u")
            case "ń", "ň", "ǹ": out.append("n")
            case "ḿ": out.append("m")
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Splits a full Chinese name written as one string into family and given name, recognising
    /// compound surnames (欧阳娜娜 → 欧阳 + 娜娜; 张三 → 张 + 三).
    public static func splitFullName(_ name: String) -> (family: String, given: String) {
        let chars = Array(name)
        if chars.count >= 3, compoundSurnames.contains(String(chars[0..<2])) {
            return (String(chars[0..<2]), String(chars[2...]))
        }
        guard chars.count >= 2 else { return (name, "") }
        return (String(chars[0]), String(chars[1...]))
    }
}
