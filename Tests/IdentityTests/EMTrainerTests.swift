import FHIRModel
@testable import Identity
import XCTest

/// EM recovers known m-probabilities and the match share from unlabeled comparisons.
final class EMTrainerTests: XCTestCase {
    func draw(_ probabilities: [Double], _ rng: inout SplitMix) -> Int {
        var x = Double.random(in: 0..<1, using: &rng)
        for (i, p) in probabilities.enumerated() {
            if x < p { return i }
            x -= p
        }
        return probabilities.count - 1
    }

    func test_em_convergesToTheGeneratingProbabilities() {
        var rng = SplitMix(seed: 42)
        // The truth for three fields.
        let m: [ComparisonField: [Double]] = [.family: [0.8, 0.05, 0.05, 0.05, 0.03, 0.02], .birthDate: [0.85, 0.05, 0.05, 0.02, 0.03],
                                              .postalCode: [0.9, 0.04, 0.06]]
        let u: [ComparisonField: [Double]] = [.family: [0.02, 0.01, 0.01, 0.02, 0.04, 0.90], .birthDate: [0.01, 0.005, 0.02, 0.02, 0.945],
                                              .postalCode: [0.05, 0.1, 0.85]]
        func pair(_ table: [ComparisonField: [Double]]) -> PairComparison {
            var c = PairComparison()
            for (field, p) in table { c.levels[field] = draw(p, &rng) }
            return c
        }
        let candidates = (0..<3000).map { _ in pair(m) } + (0..<7000).map { _ in pair(u) }
        let random = (0..<20000).map { _ in pair(u) }
        let result = EMTrainer.train(candidates: candidates, random: random, start: MatchRules.defaults)
        XCTAssertLessThan(result.lastChange, 1e-4, "converged")
        XCTAssertEqual(result.rules.prior, 0.3, accuracy: 0.02)
        for (field, truth) in m {
            let learned = result.rules.levels(field).map(\.m)
            for (l, t) in zip(learned, truth) { XCTAssertEqual(l, t, accuracy: 0.03, "\(field)") }
        }
        XCTAssertEqual(result.rules.levels(.family)[5].u, 0.90, accuracy: 0.01)
    }
}
