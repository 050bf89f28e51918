import Access
import FHIRModel
import NIOCore
import Store

/// `huitong empi train`: estimates the matching rules from the stored Patients, without labels.
/// Candidate pairs come from the same blocking the index uses, random pairs give u, and EM gives
/// m and the share of matches; name frequencies come from the same sample.
public enum MatchTraining {
    public struct Report: Sendable {
        public var patients: Int
        public var candidatePairs: Int
        public var randomPairs: Int
        public var iterations: Int
    }

    /// Reads up to `sample` current Patients (in storage order) and trains from `start`.
    public static func train(store: any ResourceStore, protection: IdentifierProtection? = nil, start: MatchRules, sample: Int = 100_000,
                             randomPairs: Int = 200_000, progress: @Sendable (String) -> Void = { _ in }) async throws -> (MatchRules, Report) {
        var records: [PatientFeatures] = []
        var page = PageRequest(count: 1000)
        while records.count < sample {
            let result = try await store.search(SearchQuery(type: "Patient", clauses: []), page: page)
            for record in result.records {
                guard let o = IdentifierProtection.parse(record.content, revealing: protection) else { continue }
                records.append(PatientFeatures(patient: o))
            }
            progress("read \(records.count) Patients")
            guard let next = result.next else { break }
            page = next
        }
        let total = try await store.resourceCounts()["Patient"] ?? records.count
        return train(records, start: start, randomPairs: randomPairs, population: total)
    }

    /// Trains on records in memory. `population`: how many Patients the rules will serve (the
    /// share of matching pairs shrinks as 1/N when each resident has a few records).
    public static func train(_ records: [PatientFeatures], start: MatchRules, randomPairs: Int = 200_000,
                             population: Int? = nil) -> (MatchRules, Report) {
        // Candidate pairs through blocking, each pair once.
        var byKey: [String: [Int]] = [:]
        for (i, r) in records.enumerated() {
            for key in BlockingKeys.keys(r) { byKey[key, default: []].append(i) }
        }
        var seen = Set<Int64>()
        var candidates: [PairComparison] = []
        for members in byKey.values where members.count > 1 && members.count <= start.maxCandidatesPerKey {
            for x in 0..<members.count {
                for y in (x + 1)..<members.count {
                    let (i, j) = (min(members[x], members[y]), max(members[x], members[y]))
                    if seen.insert(Int64(i) << 32 | Int64(j)).inserted {
                        candidates.append(Comparator.compare(records[i], records[j]))
                    }
                }
            }
        }
        // Random pairs for u (a fixed generator, so that training is repeatable).
        var generator = SplitMix(seed: 0x4855_4954_4f4e_47)
        var random: [PairComparison] = []
        if records.count > 1 {
            for _ in 0..<randomPairs {
                let i = Int.random(in: 0..<records.count, using: &generator), j = Int.random(in: 0..<records.count, using: &generator)
                if i != j { random.append(Comparator.compare(records[i], records[j])) }
            }
        }
        let n = Double(records.count)
        var trained = EMTrainer.train(candidates: candidates, random: random, start: start, allPairs: n * (n - 1) / 2)
        if let population, population > records.count {
            trained.rules.prior *= n / Double(population)
        }
        trained.rules.termFrequencies = EMTrainer.termFrequencies(records)
        return (trained.rules, Report(patients: records.count, candidatePairs: candidates.count, randomPairs: random.count,
                                      iterations: trained.iterations))
    }
}

