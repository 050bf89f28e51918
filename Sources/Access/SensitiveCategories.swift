import FHIRModel
import Foundation

/// Sensitive categories of health data (GB/T 39725-2020 level 5: mental health, HIV/STD,
/// reproductive health): records about one carry its security label (`meta.security`, HL7 v3
/// ActCode), set by the ingest pipeline on every write. Other facilities see a labelled record only
/// if the resident's Consent opts that label in for them (`Consent.provision.securityLabel`), or by
/// breaking the glass.
///
/// A record is in a category by meaning, not by one spelling (ADR 016):
/// - a diagnosis code by system and code prefix, compared without regard to case or surrounding
///   space, in each code system the category lists (ICD-10 as WHO, FHIR, ICD-10-CM, their OIDs and
///   the Chinese clinical edition name it; SNOMED CT concepts);
/// - a laboratory test (LOINC) whose result is positive (`positiveTests`: a positive, reactive or
///   detected value or interpretation), or one whose mere presence tells (`tests`: an HIV viral
///   load is measured only for people living with HIV);
/// - with `textMatching` on (the default), a concept given as text only, or coded only in systems
///   the list does not know (a facility's local codes), that names one of the category's `terms`:
///   a diagnosis a system sent as free text is treated as sensitive rather than as nobody's business;
///   and a document's own words about itself (a DocumentReference's `description` and type text, a
///   Composition's titles, an Attachment's `title`, a report's `conclusion`), and a result's or a
///   note's words (an Observation's `valueString`, `note` text), whatever its codes: a scanned
///   report cannot be read, and a LIS may send a finding as text.
///
/// The list is configurable (`huitong serve --sensitive-categories FILE`, the JSON `encoded`
/// writes); `codes` match by system and code prefix (`F` covers ICD-10 F00–F99).
public struct SensitiveCategories: Sendable, Codable, Equatable {
    public struct Category: Sendable, Codable, Equatable {
        /// The security label (v3 ActCode: `PSY`, `HIV`, `STD`, `SEX`, ...).
        public var label: String
        public var name: String
        public var codes: [Code]
        /// Tests whose positive result puts the record in the category (system and code prefix).
        public var positiveTests: [Code]?
        /// Tests whose every result puts the record in the category.
        public var tests: [Code]?
        /// Words that name the category in free text (compared without regard to case).
        public var terms: [String]?

        public init(label: String, name: String, codes: [Code], positiveTests: [Code]? = nil, tests: [Code]? = nil, terms: [String]? = nil) {
            self.label = label
            self.name = name
            self.codes = codes
            self.positiveTests = positiveTests
            self.tests = tests
            self.terms = terms
        }
    }

    /// A code system and a prefix of its codes.
    public struct Code: Sendable, Codable, Equatable {
        public var system: String
        public var prefix: String

        public init(_ system: String, _ prefix: String) {
            self.system = system
            self.prefix = prefix
        }
    }

    public var categories: [Category]
    /// Whether text-only concepts are matched against the categories' terms.
    public var textMatching: Bool

    public init(categories: [Category], textMatching: Bool = true) {
        self.categories = categories
        self.textMatching = textMatching
        self.bySystem = [:]
        self.testsBySystem = [:]
        self.terms = []
        index()
    }

    /// Code prefixes by system (lower-cased), each with its label and whether a positive result
    /// is needed (built once; not part of the file).
    private var bySystem: [String: Prefixes<String>]
    private var testsBySystem: [String: Prefixes<(label: String, positive: Bool)>]
    private var terms: [(term: String, label: String, plain: Bool)]

    /// Values by code prefix, found for a code with one lookup per distinct prefix length (a few),
    /// not one comparison per prefix: every Coding of every write is looked up here, and a
    /// category lists dozens of LOINC tests and ICD-10 blocks under seven names.
    struct Prefixes<Value: Sendable>: Sendable {
        private var byPrefix: [String: [Value]] = [:]
        /// The distinct prefix lengths in UTF-8 bytes, ascending.
        private var lengths: [Int] = []
        private var all: [(prefix: String, value: Value)] = []

        mutating func add(_ prefix: String, _ value: Value) {
            byPrefix[prefix, default: []].append(value)
            all.append((prefix, value))
            let n = prefix.utf8.count
            if !lengths.contains(n) { lengths = (lengths + [n]).sorted() }
        }

        /// Each value whose prefix `code` starts with. An ASCII code (every code of the shipped list
        /// and nearly every code sent) is cut at each prefix length and looked up; any other is
        /// compared as Swift compares strings (canonically equivalent spellings match), as before.
        func forEach(prefixOf code: String, _ body: (Value) -> Void) {
            let u = code.utf8
            guard u.allSatisfy({ $0 < 0x80 }) else {
                for entry in all where code.hasPrefix(entry.prefix) { body(entry.value) }
                return
            }
            for n in lengths {
                guard n <= u.count else { break }
                if let values = byPrefix[String(decoding: u.prefix(n), as: UTF8.self)] { values.forEach(body) }
            }
        }
    }

    private mutating func index() {
        bySystem = [:]
        testsBySystem = [:]
        terms = []
        for category in categories {
            for code in category.codes {
                bySystem[Self.normalisedSystem(code.system), default: Prefixes()].add(Self.normalisedCode(code.prefix), category.label)
            }
            for (codes, positive) in [(category.positiveTests, true), (category.tests, false)] {
                for code in codes ?? [] {
                    testsBySystem[Self.normalisedSystem(code.system), default: Prefixes()].add(Self.normalisedCode(code.prefix), (category.label, positive))
                }
            }
            for term in category.terms ?? [] where !term.isEmpty {
                let t = Self.folded(term).lowercased()
                terms.append((t, category.label, Self.isPlain(t)))
            }
        }
    }

    /// A system as compared: lower case, without surrounding space or trailing slashes. Most
    /// systems already are (every Coding and Identifier of every write passes here): returned as
    /// they are, without Foundation's string bridging.
    static func normalisedSystem(_ s: String) -> String {
        let u = s.utf8
        if let last = u.last, last != UInt8(ascii: "/"), last != UInt8(ascii: " "), u.first != UInt8(ascii: " "),
           !u.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
            return s
        }
        var t = Substring(s.trimmingSpaces().lowercased())
        while t.hasSuffix("/") { t = t.dropLast() }
        return String(t)
    }

    /// A code as compared: upper case, without surrounding space (as it is, when it already is).
    static func normalisedCode(_ s: String) -> String {
        let u = s.utf8
        if let last = u.last, last != UInt8(ascii: " "), u.first != UInt8(ascii: " "),
           !u.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) {
            return s
        }
        return s.trimmingSpaces().uppercased()
    }

    enum CodingKeys: String, CodingKey { case categories, textMatching }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(categories: try container.decode([Category].self, forKey: .categories),
                  textMatching: try container.decodeIfPresent(Bool.self, forKey: .textMatching) ?? true)
    }

    public static func == (a: Self, b: Self) -> Bool { a.categories == b.categories && a.textMatching == b.textMatching }

    public static let labelSystem = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

    /// The labels of every category.
    public var labels: Set<String> { Set(categories.map(\.label)) }

    /// ICD-10 as published by WHO, as FHIR, HL7 and ICD-10-CM name it (URIs and OIDs), and the
    /// Chinese national clinical edition (GB/T 14396, 疾病分类与代码).
    static let icd10Systems = [
        "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10-cn",
        "http://terminology.hl7.org/CodeSystem/icd10", "urn:oid:2.16.840.1.113883.6.3", "urn:oid:2.16.840.1.113883.6.90",
        "urn:oid:2.16.156.10011.2.3.3.11",
    ]
    static let snomed = "http://snomed.info/sct"
    static let loinc = "http://loinc.org"

    static func icd10(_ prefixes: String...) -> [Code] {
        icd10Systems.flatMap { system in prefixes.map { Code(system, $0) } }
    }

    static func snomed(_ codes: String...) -> [Code] { codes.map { Code(snomed, $0) } }
    static func loinc(_ codes: String...) -> [Code] { codes.map { Code(loinc, $0) } }

    /// The built-in list: diagnoses by ICD-10 chapter blocks and SNOMED CT concepts, laboratory
    /// tests by LOINC, and the words that name each category in Chinese and English.
    public static let defaults = SensitiveCategories(categories: [
        Category(label: "PSY", name: "精神卫生 mental health",
                 codes: icd10("F") + snomed("74732009", "35489007", "370143000", "58214004", "13746004", "197480006", "69322001"),
                 terms: ["精神障碍", "精神分裂", "抑郁", "双相", "焦虑症", "精神病", "mental disorder", "depressi", "schizophren", "bipolar",
                         "psychosis", "psychotic",
                         "精神障礙", "抑鬱", "雙相", "焦慮症"]),
        Category(label: "HIV", name: "艾滋病 HIV/AIDS",
                 codes: icd10("B20", "B21", "B22", "B23", "B24", "Z21", "R75") + snomed("86406008", "62479008", "165816005", "91947003"),
                 positiveTests: loinc("7917-8", "7918-6", "5221-7", "68961-2", "56888-1", "75622-1", "31201-7", "43009-0", "49905-3",
                                      "25835-0", "29893-5", "48345-3", "48346-1", "44607-9", "69668-2", "80387-4"),
                 tests: loinc("20447-9", "23876-6", "24013-5", "25836-8", "29539-4", "29541-0", "41513-2", "41514-0", "41515-7",
                              "41516-5", "48510-2", "48511-0", "48551-6", "48552-4", "51780-5", "59419-2", "62469-2", "70241-5"),
                 terms: ["艾滋", "hiv", "aids", "人类免疫缺陷", "免疫缺陷病毒", "获得性免疫缺陷", "免疫缺陷综合征",
                         "愛滋", "人類免疫缺陷", "獲得性免疫缺陷", "免疫缺陷綜合", "免疫缺乏"]),
        Category(label: "STD", name: "性传播疾病 sexually transmitted diseases",
                 codes: icd10("A50", "A51", "A52", "A53", "A54", "A55", "A56", "A57", "A58", "A59", "A60", "A63", "A64")
                     + snomed("76272004", "15628003", "105629000", "33839006"),
                 positiveTests: loinc("20507-0", "31147-2", "5292-8", "24110-9", "8041-6", "47236-5", "22587-0", "26009-1", "21414-8",
                                      "43304-5", "21613-5", "24111-7", "50387-0", "6487-3", "36902-5", "21415-5"),
                 terms: ["梅毒", "淋病", "尖锐湿疣", "生殖器疱疹", "衣原体", "性病", "syphilis", "gonorrh", "chlamydia", "genital herpes",
                         "尖銳濕疣", "生殖器皰疹", "衣原體"]),
        Category(label: "SEX", name: "生殖健康 reproductive health",
                 codes: icd10("O00", "O01", "O02", "O03", "O04", "O05", "O06", "O07", "O08", "Z30", "Z31", "N46", "N97")
                     + snomed("17369002", "386639001", "8619003"),
                 terms: ["人工流产", "流产", "引产", "不孕", "不育", "abortion", "infertil", "流產", "引產"]),
    ])

    public static func load(path: String) throws -> SensitiveCategories {
        try JSONDecoder().decode(SensitiveCategories.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The labels the resource is in: codes anywhere in it (any Coding), tests with their results,
    /// and text-only concepts naming a category's terms.
    public func labels(for resource: JSONObject) -> Set<String> {
        guard !categories.isEmpty else { return [] }
        var found = Set<String>()
        let findingsAsText = ["Observation", "QuestionnaireResponse"].contains(resource["resourceType"]?.stringValue ?? "")
        func codeLabels(_ coding: JSONObject) {
            guard let system = coding["system"]?.stringValue, let code = coding["code"]?.stringValue,
                  let prefixes = bySystem[Self.normalisedSystem(system)] else { return }
            prefixes.forEach(prefixOf: Self.normalisedCode(code)) { found.insert($0) }
        }
        func visit(_ value: JSON) {
            switch value {
            case .object(let o):
                codeLabels(o)
                // Free text decides where no code the categories know does: text only, or only local codes.
                if textMatching, let text = o["text"]?.stringValue, !knowsACoding(o) {
                    found.formUnion(termLabels(text))
                }
                // A document's title names what it is about, whatever its type's code: the
                // platform cannot read a scanned report, and its title is what tells.
                if textMatching, let title = o["title"]?.stringValue, Self.isAttachment(o) {
                    found.formUnion(termLabels(title))
                }
                // A result sent as text (an Observation's or its components' `valueString`, "HIV感染"
                // from a LIS; a QuestionnaireResponse's answers) and a note (R4 `note` is always an
                // Annotation) name a category unless they only report negatives, as a conclusion.
                if textMatching, findingsAsText, let value = o["valueString"]?.stringValue, Self.reportsAFinding(value) {
                    found.formUnion(termLabels(value))
                }
                if textMatching, let notes = o["note"]?.arrayValue {
                    for text in notes.compactMap({ $0["text"]?.stringValue }) where Self.reportsAFinding(text) { found.formUnion(termLabels(text)) }
                }
                for (key, member) in o where key != "meta" && key != "text" && key != "note" { visit(member) }
            case .array(let items):
                for item in items { visit(item) }
            default:
                break
            }
        }
        visit(.object(resource))
        if textMatching, let type = resource["resourceType"]?.stringValue {
            for text in Self.documentTexts(resource, type: type) { found.formUnion(termLabels(text)) }
        }
        found.formUnion(testLabels(resource))
        return found
    }

    /// What a document or a report says it is about, in words, whatever its codes: a
    /// DocumentReference's `description` (a CDA's title in an MHD provide) and the text of its
    /// `type` and `category` (a document type's code says what kind of document, not about what);
    /// a Composition's title and its sections' titles and narratives; a DiagnosticReport's
    /// `conclusion`.
    static func documentTexts(_ resource: JSONObject, type: String) -> [String] {
        func conceptTexts(_ value: JSON?) -> [String] {
            switch value {
            case .object(let o)?: return o["text"]?.stringValue.map { [$0] } ?? []
            case .array(let items)?: return items.flatMap { conceptTexts($0) }
            default: return []
            }
        }
        /// Each section's title and narrative (what a reader of the document sees of it).
        func sectionTitles(_ sections: JSON?) -> [String] {
            (sections?.arrayValue ?? []).flatMap { s in
                [s["title"]?.stringValue, s["text"]?["div"]?.stringValue].compactMap { $0 } + sectionTitles(s["section"])
            }
        }
        switch type {
        case "DocumentReference":
            return (resource["description"]?.stringValue.map { [$0] } ?? []) + conceptTexts(resource["type"]) + conceptTexts(resource["category"])
        case "Composition":
            return (resource["title"]?.stringValue.map { [$0] } ?? []) + sectionTitles(resource["section"])
        case "DiagnosticReport":
            // A screening's "HIV抗体阴性，梅毒阴性" is not about either (a pre-operative panel):
            // a conclusion that only reports negatives names no category.
            return resource["conclusion"]?.stringValue.map { reportsAFinding($0) ? [$0] : [] } ?? []
        default:
            return []
        }
    }

    /// Whether a report's words state something other than negatives: no negative word at all, or
    /// a positive one left when the negatives are taken out ("阳性" beside "阴性").
    static func reportsAFinding(_ text: String) -> Bool {
        var t = text.lowercased()
        guard negativeWords.contains(where: { t.containsBytes($0) }) else { return true }
        for word in negativeWords { t = t.replacing(word, with: " ") }
        return positiveWords.contains { $0.count > 1 && t.containsBytes($0) }
    }

    /// An R4 Attachment (a document's content, a report's presented form): an object with a
    /// `title` and nothing R4's Attachment does not have.
    static func isAttachment(_ o: JSONObject) -> Bool {
        o.members.allSatisfy { attachmentElements.contains($0.key) }
    }

    static let attachmentElements: Set<String> = {
        let names = ["id", "extension", "contentType", "language", "data", "url", "size", "hash", "title", "creation"]
        return Set(names + names.map { "_" + $0 })
    }()

    /// Whether a concept carries a coding in a system the categories list (diagnoses or tests).
    func knowsACoding(_ concept: JSONObject) -> Bool {
        (concept["coding"]?.arrayValue ?? []).contains { coding in
            guard let system = coding["system"]?.stringValue.map(Self.normalisedSystem) else { return false }
            return bySystem[system] != nil || testsBySystem[system] != nil
        }
    }

    /// The categories whose terms a free text names (`mentions`).
    func termLabels(_ text: String) -> Set<String> {
        let t = Self.folded(text).lowercased()
        let plain = Self.isPlain(t)
        return Set(terms.filter { Self.mentions(t, plain: plain, $0.term, termPlain: $0.plain) }.map(\.label))
    }

    /// Text as its terms are compared: fullwidth Latin letters and digits (ＨＩＶ, typed with a
    /// Chinese input method) as ASCII, and without the dots or middle dots some spell an
    /// abbreviation with (H.I.V., A·I·D·S). Texts with neither (nearly all: a decimal, a sentence's
    /// full stop, fullwidth punctuation do not count) are returned as they are, unscanned twice.
    static func folded(_ text: String) -> String {
        guard needsFolding(text) else { return text }
        var scalars = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            switch u.value {
            case 0x2E, 0xB7, 0xFF0E, 0x30FB, 0xFF65: continue
            case 0xFF10...0xFF19, 0xFF21...0xFF3A, 0xFF41...0xFF5A: scalars.append(Unicode.Scalar(u.value - 0xFEE0)!)
            default: scalars.append(u)
            }
        }
        return String(scalars)
    }

    /// Whether `text` holds a fullwidth letter or digit, a middle dot, or a dot between two letters
    /// (looked for in its UTF-8 bytes).
    static func needsFolding(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { b -> Bool in
            func letter(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") || c >= 0x80 }
            var i = 0
            while i < b.count {
                switch b[i] {
                case 0x2E where i > 0 && i + 1 < b.count && letter(b[i - 1]) && letter(b[i + 1]):
                    return true
                case 0xC2 where i + 1 < b.count && b[i + 1] == 0xB7:   // U+00B7
                    return true
                case 0xE3 where i + 2 < b.count && b[i + 1] == 0x83 && b[i + 2] == 0xBB:   // U+30FB
                    return true
                case 0xEF where i + 2 < b.count:
                    let (x, y) = (b[i + 1], b[i + 2])
                    // U+FF0E, U+FF10–FF19, U+FF21–FF3A (EF BC …); U+FF41–FF5A, U+FF65 (EF BD …).
                    if x == 0xBC && (y == 0x8E || (0x90...0x99).contains(y) || (0xA1...0xBA).contains(y)) { return true }
                    if x == 0xBD && ((0x81...0x9A).contains(y) || y == 0xA5) { return true }
                default:
                    break
                }
                i += 1
            }
            return false
        }
    }

    /// Whether `text` holds `term` (both lower-cased), as Foundation's `String.contains` found it:
    /// canonically equivalent spellings match (a CJK compatibility ideograph for its unified one,
    /// an accent as a combining mark). That call bridged each text to an `NSString`, a few
    /// microseconds a term, and records with a note or a local code's text were ingested at half
    /// the rate. A text and a term that are both `isPlain` (nearly every text, every shipped term)
    /// have no other spelling and are compared as UTF-8 bytes; others also as Swift compares
    /// characters. `plain`, `termPlain`: `isPlain` of each, computed once.
    static func mentions(_ text: String, plain: Bool, _ term: String, termPlain: Bool) -> Bool {
        text.containsBytes(term) || !(plain && termPlain) && text.firstRange(of: term) != nil
    }

    /// Only ASCII, CJK unified ideographs, CJK punctuation (not its combining tone marks) and
    /// fullwidth forms: scalars with no canonical decomposition that combine with nothing.
    static func isPlain(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { u in
            switch u.value {
            case 0...0x7F, 0x3000...0x3029, 0x3030...0x303F, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xFF00...0xFFEF, 0x20000...0x2A6DF: true
            default: false
            }
        }
    }

    /// An Observation of a listed test: its label when the test tells by itself, or when its
    /// result is positive.
    func testLabels(_ resource: JSONObject) -> Set<String> {
        guard !testsBySystem.isEmpty, resource["resourceType"]?.stringValue == "Observation" else { return [] }
        var found = Set<String>()
        var needsPositive = Set<String>()
        for coding in resource["code"]?["coding"]?.arrayValue ?? [] {
            guard let system = coding["system"]?.stringValue, let code = coding["code"]?.stringValue,
                  let tests = testsBySystem[Self.normalisedSystem(system)] else { continue }
            tests.forEach(prefixOf: Self.normalisedCode(code)) { test in
                if test.positive { needsPositive.insert(test.label) } else { found.insert(test.label) }
            }
        }
        if !needsPositive.isEmpty, Self.isPositive(resource) { found.formUnion(needsPositive) }
        return found
    }

    /// Codes and words that say a qualitative result is positive.
    static let positiveCodes: Set<String> = ["10828004", "260373001", "11214006", "52101004", "POS", "DET", "RR"]
    static let positiveWords = ["阳性", "positive", "reactive", "detected", "pos", "+"]
    static let negativeWords = ["阴性", "negative", "non-reactive", "nonreactive", "not detected", "undetected", "neg"]

    /// A positive, reactive or detected value or interpretation (a number alone says nothing of
    /// positivity: tests that tell by their mere presence are listed under `tests`).
    static func isPositive(_ observation: JSONObject) -> Bool {
        func codes(_ concept: JSON?) -> [String] { (concept?["coding"]?.arrayValue ?? []).compactMap { $0["code"]?.stringValue?.uppercased() } }
        func positiveText(_ text: String?) -> Bool {
            guard let t = text.map({ $0.trimmingSpaces().lowercased() }), !t.isEmpty else { return false }
            let plain = isPlain(t)
            if negativeWords.contains(where: { mentions(t, plain: plain, $0, termPlain: isPlain($0)) }) { return false }
            return positiveWords.contains { t == $0 || mentions(t, plain: plain, $0, termPlain: isPlain($0)) && $0.count > 1 }
        }
        if codes(observation["valueCodeableConcept"]).contains(where: positiveCodes.contains) { return true }
        if positiveText(observation["valueCodeableConcept"]?["text"]?.stringValue) || positiveText(observation["valueString"]?.stringValue) { return true }
        if observation["valueBoolean"]?.boolValue == true { return true }
        for interpretation in observation["interpretation"]?.arrayValue ?? [] {
            if codes(interpretation).contains(where: ["POS", "DET", "A", "AA", "RR"].contains) { return true }
            if positiveText(interpretation["text"]?.stringValue) { return true }
        }
        return false
    }

    /// The resource with a `meta.security` label for each category it is coded in (labels already
    /// there are kept; nothing changes when it is in none).
    public func labelled(_ resource: JSONObject) -> JSONObject {
        let found = labels(for: resource)
        guard !found.isEmpty else { return resource }
        var out = resource
        var meta = resource["meta"]?.objectValue ?? JSONObject()
        var security = meta["security"]?.arrayValue ?? []
        let present = Set(security.compactMap { $0["system"]?.stringValue == Self.labelSystem ? $0["code"]?.stringValue : nil })
        for label in found.subtracting(present).sorted() {
            security.append(.object(JSONObject([("system", .string(Self.labelSystem)), ("code", .string(label))])))
        }
        meta["security"] = .array(security)
        out["meta"] = .object(meta)
        return out
    }

    /// The sensitive labels a stored record carries (its `meta.security`).
    public func labels(ofStored resource: JSONObject) -> Set<String> {
        let all = labels
        return Set((resource["meta"]?["security"]?.arrayValue ?? []).compactMap { coding -> String? in
            guard coding["system"]?.stringValue == Self.labelSystem, let code = coding["code"]?.stringValue, all.contains(code) else { return nil }
            return code
        })
    }
}
