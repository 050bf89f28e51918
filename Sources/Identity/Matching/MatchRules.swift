import Foundation

/// The operator-editable matching rules (a JSON file, `huitong empi train` writes one): per field
/// level the probabilities m (the level among true matches) and u (among non-matches), the prior
/// probability that a blocked candidate pair is a match, the two thresholds, and term frequencies
/// of names (张伟 agreeing is weaker evidence than 欧阳娜娜 agreeing).
public struct MatchRules: Codable, Sendable, Equatable {
    public struct Level: Codable, Sendable, Equatable {
        public var name: String
        public var m: Double
        public var u: Double

        public init(_ name: String, m: Double, u: Double) {
            self.name = name
            self.m = m
            self.u = u
        }
    }

    /// Probability that a candidate pair found by blocking is a true match (λ).
    public var prior: Double
    /// Match probability at or above which a record is linked automatically (AUTO, level3).
    public var autoLinkThreshold: Double
    /// Match probability at or above which (and below auto) a review item is raised (POSSIBLE_MATCH).
    public var reviewThreshold: Double
    /// Levels per `ComparisonField` raw value, in the field's level order.
    public var fields: [String: [Level]]
    /// Relative frequency of toneless/Latin family and given names among records ("family", "given").
    public var termFrequencies: [String: [String: Double]]
    /// A blocking key shared by more records than this is too common to find candidates with.
    public var maxCandidatesPerKey: Int
    /// Link automatically only when an identifier, phone, street or a newborn's mother agrees too,
    /// not on names and dates alone (absent in a file: true).
    public var requireCorroboration: Bool {
        get { corroboration ?? true }
        set { corroboration = newValue }
    }
    private var corroboration: Bool?

    enum CodingKeys: String, CodingKey {
        case prior, autoLinkThreshold, reviewThreshold, fields, termFrequencies, maxCandidatesPerKey
        case corroboration = "requireCorroboration"
    }

    public init(prior: Double, autoLinkThreshold: Double, reviewThreshold: Double, fields: [String: [Level]],
                termFrequencies: [String: [String: Double]] = [:], maxCandidatesPerKey: Int = 200) {
        self.prior = prior
        self.autoLinkThreshold = autoLinkThreshold
        self.reviewThreshold = reviewThreshold
        self.fields = fields
        self.termFrequencies = termFrequencies
        self.maxCandidatesPerKey = maxCandidatesPerKey
    }

    /// The levels of `field`, the defaults filling any the file leaves out.
    public func levels(_ field: ComparisonField) -> [Level] {
        let given = fields[field.rawValue] ?? []
        let fallback = Self.defaults.fields[field.rawValue] ?? []
        return field.levels.enumerated().map { i, name in
            given.first { $0.name == name } ?? fallback.first { $0.name == name } ?? Level(name, m: 0.5, u: 0.5)
        }
    }

    /// Starting values before any training, as probabilities over random pairs of records: the
    /// prior is that of two random records being one resident in a region of about a million
    /// (`huitong empi train` estimates all of them from the data). Identifiers and dates are strong,
    /// names moderate, gender weak; "different" levels weigh against. Term frequencies of common
    /// Chinese surnames and given names are approximate national shares (toneless pinyin).
    public static let defaults = MatchRules(
        prior: 1e-6, autoLinkThreshold: 0.99, reviewThreshold: 0.6,
        fields: [
            "residentID": [.init("exact", m: 0.95, u: 1e-8), .init("typo", m: 0.03, u: 1e-7), .init("different", m: 0.02, u: 1 - 1.1e-7)],
            "identifier": [.init("exact", m: 0.90, u: 1e-7), .init("typo", m: 0.05, u: 1e-6), .init("different", m: 0.05, u: 1 - 1.1e-6)],
            "family": [.init("exact", m: 0.90, u: 0.02), .init("pinyin", m: 0.03, u: 0.003), .init("toneless", m: 0.02, u: 0.005),
                       .init("jw92", m: 0.03, u: 0.003), .init("jw80", m: 0.01, u: 0.02), .init("different", m: 0.01, u: 0.949)],
            "given": [.init("exact", m: 0.85, u: 0.002), .init("pinyin", m: 0.04, u: 0.0005), .init("toneless", m: 0.03, u: 0.001),
                      .init("jw92", m: 0.04, u: 0.002), .init("jw80", m: 0.02, u: 0.01), .init("different", m: 0.02, u: 0.9845)],
            "birthDate": [.init("exact", m: 0.90, u: 3e-5), .init("transposed", m: 0.03, u: 1e-5), .init("oneDigit", m: 0.04, u: 3e-4),
                          .init("yearMonth", m: 0.01, u: 4e-4), .init("different", m: 0.02, u: 0.99926)],
            "gender": [.init("exact", m: 0.98, u: 0.5), .init("different", m: 0.02, u: 0.5)],
            "phone": [.init("exact", m: 0.70, u: 1e-7), .init("different", m: 0.30, u: 1 - 1e-7)],
            "postalCode": [.init("exact", m: 0.85, u: 0.01), .init("oneDigit", m: 0.05, u: 0.03), .init("different", m: 0.10, u: 0.96)],
            "city": [.init("exact", m: 0.85, u: 0.02), .init("jw90", m: 0.05, u: 0.005), .init("different", m: 0.10, u: 0.975)],
            "street": [.init("exact", m: 0.75, u: 1e-4), .init("jw90", m: 0.10, u: 2e-4), .init("jw70", m: 0.05, u: 0.005),
                       .init("different", m: 0.10, u: 0.9947)],
            "houseNumber": [.init("exact", m: 0.80, u: 0.02), .init("different", m: 0.20, u: 0.98)],
            "motherID": [.init("exact", m: 0.95, u: 1e-8), .init("different", m: 0.05, u: 1 - 1e-8)],
        ],
        termFrequencies: [
            "family": ["wang": 0.072, "li": 0.074, "zhang": 0.068, "liu": 0.054, "chen": 0.046, "yang": 0.032, "huang": 0.024,
                       "zhao": 0.020, "wu": 0.021, "zhou": 0.019, "xu": 0.018, "sun": 0.013, "ma": 0.012, "zhu": 0.012, "hu": 0.012,
                       "guo": 0.011, "he": 0.011, "gao": 0.010, "lin": 0.010, "luo": 0.009, "zheng": 0.008, "liang": 0.008,
                       "xie": 0.007, "song": 0.006, "tang": 0.006, "han": 0.006, "feng": 0.005, "deng": 0.005, "cao": 0.005],
            "given": ["wei": 0.012, "fang": 0.006, "na": 0.006, "min": 0.006, "jing": 0.006, "li": 0.006, "qiang": 0.005,
                      "lei": 0.005, "jun": 0.005, "yang": 0.005, "yong": 0.005, "yan": 0.005, "jie": 0.005, "juan": 0.004,
                      "tao": 0.004, "ming": 0.004, "chao": 0.004, "xiuying": 0.004, "xia": 0.004, "ping": 0.004, "gang": 0.003,
                      "guiying": 0.003, "xiulan": 0.003, "hui": 0.003, "hong": 0.003, "hua": 0.003, "bin": 0.003, "fei": 0.003],
        ])

    public static func load(path: String) throws -> MatchRules {
        try JSONDecoder().decode(MatchRules.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func write(path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Fellegi–Sunter scoring with the rules' weights: the log-likelihood ratio of match against
/// non-match summed over fields, plus the prior, as a probability.
public struct MatchScorer: Sendable {
    public let rules: MatchRules
    /// log2(m/u) per field and level.
    let weights: [ComparisonField: [Double]]
    let m: [ComparisonField: [Double]]
    let priorWeight: Double
    /// The smallest frequency in each table: values not in it are at most this common.
    let rareFrequency: [String: Double]

    public init(_ rules: MatchRules) {
        self.rules = rules
        var w: [ComparisonField: [Double]] = [:], m: [ComparisonField: [Double]] = [:]
        for field in ComparisonField.allCases {
            let levels = rules.levels(field)
            w[field] = levels.map { log2(max($0.m, 1e-12) / max($0.u, 1e-12)) }
            m[field] = levels.map(\.m)
        }
        weights = w
        self.m = m
        let p = min(max(rules.prior, 1e-12), 1 - 1e-12)
        priorWeight = log2(p / (1 - p))
        rareFrequency = rules.termFrequencies.mapValues { $0.values.min() ?? 1 }
    }

    /// The match weight (bits) and probability of a compared pair.
    public func score(_ c: PairComparison) -> (weight: Double, probability: Double) {
        var total = priorWeight
        for (field, level) in c.levels {
            guard let w = weights[field], level < w.count else { continue }
            var weight = w[level]
            // Term frequency: exact agreement on a name weighs by that name's own frequency.
            if level == 0, let value = field == .family ? c.family : (field == .given ? c.given : nil),
               let table = rules.termFrequencies[field.rawValue], !table.isEmpty {
                let frequency = table[value] ?? rareFrequency[field.rawValue] ?? 1
                weight = log2(max(m[field]![level], 1e-12) / max(frequency, 1e-9))
            }
            total += weight
        }
        let probability = 1 / (1 + pow(2, -total))
        return (total, probability)
    }
}
