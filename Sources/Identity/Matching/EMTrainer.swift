/// Estimates the rules' probabilities from unlabeled data, as Splink and the record-linkage
/// literature do: u (agreement by chance) from random record pairs, then m and the prior by
/// expectation–maximisation over the candidate pairs blocking finds (with u held fixed).
public enum EMTrainer {
    public struct Result: Sendable {
        public var rules: MatchRules
        public var iterations: Int
        /// Largest change of any m or the prior in the last iteration.
        public var lastChange: Double
    }

    /// - Parameters:
    ///   - candidates: comparisons of blocked pairs (a mix of matches and non-matches).
    ///   - random: comparisons of random pairs (almost all non-matches).
    ///   - start: rules whose m values EM starts from; thresholds and term frequencies are kept.
    ///   - allPairs: how many record pairs there are in all. EM finds the share of matches among the
    ///     candidate pairs; scoring needs it among all pairs (u is over random pairs), so the prior
    ///     written is that share scaled by candidates / all pairs. Nil keeps the candidate share.
    public static func train(candidates: [PairComparison], random: [PairComparison], start: MatchRules,
                             allPairs: Double? = nil, maxIterations: Int = 100, tolerance: Double = 1e-6) -> Result {
        var rules = start
        rules.prior = 0.1
        // u from random pairs, smoothed so that no level is impossible.
        for field in ComparisonField.allCases {
            let counts = levelCounts(random.map { ($0, 1.0) }, field)
            let total = counts.reduce(0, +)
            guard total > 0 else { continue }
            var levels = rules.levels(field)
            for i in levels.indices {
                levels[i].u = (counts[i] + 0.5) / (total + 0.5 * Double(levels.count))
            }
            rules.fields[field.rawValue] = levels
        }
        var iterations = 0
        var change = Double.infinity
        while iterations < maxIterations && change > tolerance {
            iterations += 1
            // E: the probability that each candidate pair is a match under the current parameters.
            let scorer = MatchScorer(MatchRules(prior: rules.prior, autoLinkThreshold: 1, reviewThreshold: 1, fields: rules.fields))
            let p = candidates.map { scorer.score($0).probability }
            // M: m as the match-weighted share of each level; the prior as the mean probability.
            change = 0
            for field in ComparisonField.allCases {
                let counts = levelCounts(zip(candidates, p).map { ($0, $1) }, field)
                let total = counts.reduce(0, +)
                guard total > 1e-9 else { continue }
                var levels = rules.levels(field)
                for i in levels.indices {
                    let m = (counts[i] + 1e-3) / (total + 1e-3 * Double(levels.count))
                    change = max(change, abs(m - levels[i].m))
                    levels[i].m = m
                }
                rules.fields[field.rawValue] = levels
            }
            let prior = min(max(p.reduce(0, +) / Double(max(p.count, 1)), 1e-6), 1 - 1e-6)
            change = max(change, abs(prior - rules.prior))
            rules.prior = prior
        }
        if let allPairs, allPairs > 0 {
            rules.prior = min(rules.prior * Double(candidates.count) / allPairs, 0.5)
        }
        return Result(rules: rules, iterations: iterations, lastChange: change)
    }

    /// Weighted count of pairs per level of `field` (pairs without the field left out).
    static func levelCounts(_ pairs: [(PairComparison, Double)], _ field: ComparisonField) -> [Double] {
        var counts = [Double](repeating: 0, count: field.levels.count)
        for (c, weight) in pairs {
            if let level = c.levels[field], level < counts.count { counts[level] += weight }
        }
        return counts
    }

    /// Relative frequencies of the most common toneless/Latin family and given names (at most
    /// `limit` each), for term-frequency adjustment.
    public static func termFrequencies(_ records: [PatientFeatures], limit: Int = 5000) -> [String: [String: Double]] {
        var family: [String: Int] = [:], given: [String: Int] = [:]
        var n = 0
        for r in records {
            guard let name = r.primaryName else { continue }
            n += 1
            if !name.familyToneless.isEmpty { family[name.familyToneless, default: 0] += 1 }
            if !name.givenToneless.isEmpty { given[name.givenToneless, default: 0] += 1 }
        }
        func top(_ counts: [String: Int]) -> [String: Double] {
            let sorted = counts.sorted { $0.value > $1.value }.prefix(limit)
            return Dictionary(uniqueKeysWithValues: sorted.map { ($0.key, Double($0.value) / Double(max(n, 1))) })
        }
        return ["family": top(family), "given": top(given)]
    }
}
