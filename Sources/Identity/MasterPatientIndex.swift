import Access
import FHIRModel
import Foundation
import Store
import Synchronization

/// What matching decided for one Patient write (the vocabulary of HAPI MDM).
public enum MatchOutcome: String, Sendable {
    /// Linked automatically to an existing Person.
    case match = "MATCH"
    /// No candidate was close enough: a new Person.
    case noMatch = "NO_MATCH"
    /// Close, but not close enough to link without a person looking: new Person and a review item.
    case possibleMatch = "POSSIBLE_MATCH"
    /// A MANUAL link stands; the matcher left it alone.
    case manual = "MANUAL"
    /// The Patient was deleted and left its Person.
    case removed = "REMOVED"
}

/// A resource the index wants written in the same transaction as the Patient (Person, review
/// Task); the platform validates and prepares it like any other write.
public struct IndexWrite: Sendable {
    public let type: String
    public let id: String
    public let resource: JSONObject
    /// The version that must still be current (updates of a Person read for this plan).
    public let ifMatch: Int?
    public var key: ResourceKey { ResourceKey(type, id) }
    /// POST for a new resource, PUT otherwise.
    public let method: String
}

/// The master index's share of one write unit.
public struct LinkagePlan: Sendable {
    public var writes: [IndexWrite] = []
    /// The blocking searches the decisions rest on: a registration of the same resident
    /// committed meanwhile changes one of them, and the plan is made again.
    public var assumptions: [Assumption] = []
    public var outcomes: [ResourceKey: MatchOutcome] = [:]
    /// The Person each Patient of the unit ends up linked to.
    public var persons: [ResourceKey: ResourceKey] = [:]
    /// The blocking keys the decisions rest on (those not too common to block on): the plan holds
    /// only while no other registration under one of them commits.
    public var blockingKeys: Set<String> = []
}

/// The master patient index (居民主索引): every facility's Patient is a source record; one
/// `Person` per resident links them (`Person.link.target`, assurance level3 for AUTO links made
/// here, level4 for MANUAL links made by a reviewer, which matching never changes). Runs inside the
/// ingest pipeline: `plan(for:)` turns a unit's Patient writes into Person and review-Task writes
/// committed with them.
public struct MasterPatientIndex: Sendable {
    public let store: any ResourceStore
    public let scorer: MatchScorer
    /// ID and phone numbers are stored encrypted: candidates are read in clear, and blocking keys
    /// (which hold them) are filed and looked up blinded.
    public let protection: IdentifierProtection?
    /// Blocking keys found too common to block on (more than `maxCandidatesPerKey` holders), so
    /// that a unit need not hold them while it is planned (`lockNames`).
    let common = CommonKeys()
    /// Candidates as earlier plans read them (by version).
    let candidates = CandidateCache()

    public init(store: any ResourceStore, rules: MatchRules = .defaults, protection: IdentifierProtection? = nil) {
        self.store = store
        self.scorer = MatchScorer(rules)
        self.protection = protection
    }

    /// What a unit's plan must hold while it is planned and committed, so that no other plan in
    /// this process rests on the same facts meanwhile: its Patients, and their blocking keys except
    /// those known to be too common to block on. A plan made under these names is current when
    /// `plan.blockingKeys` is among them (a key that became rare again is not: plan once more).
    public func lockNames(for writes: [PreparedWrite]) -> Set<String> {
        var names = Set<String>()
        for w in writes where w.key.type == "Patient" {
            names.insert(w.key.description)
            names.formUnion(filedKeys(w))
        }
        return common.keys.withLock { names.subtracting($0) }
    }

    /// The blocking keys a Patient write is filed under (its index entries; computed when absent).
    func filedKeys(_ w: PreparedWrite) -> [String] {
        let filed = w.index.compactMap { e -> String? in
            guard e.parameter == BlockingKeys.parameter, case .token(_, let code) = e.value else { return nil }
            return code
        }
        guard filed.isEmpty, let r = w.resource else { return filed }
        return blockingKeys(PatientFeatures(patient: r))
    }

    /// A record's blocking keys as filed in the index (`BlockingKeys.parameter`).
    func blockingKeys(_ features: PatientFeatures) -> [String] {
        BlockingKeys.filed(features, protection: protection)
    }

    public var rules: MatchRules { scorer.rules }

    /// - Parameter previous: for `huitong empi rebuild`, the Person each Patient belonged to before the
    ///   automatic links were cleared: a Patient that matches nothing better goes back there (when
    ///   it still holds a reviewer's MANUAL links) rather than to a new Person.
    public func plan(for writes: [PreparedWrite], previous: [ResourceKey: ResourceKey] = [:]) async throws -> LinkagePlan {
        let patients = writes.filter { $0.key.type == "Patient" }
        guard !patients.isEmpty else { return LinkagePlan() }
        let workspace = LinkageWorkspace(store: store, protection: protection, cache: candidates)
        var plan = LinkagePlan()
        // Every blocking key of the unit in one lookup, and the Persons of the unit's Patients.
        var features: [ResourceKey: PatientFeatures] = [:]
        var keys: [ResourceKey: [String]] = [:]
        for w in patients {
            guard let r = w.resource else { continue }
            features[w.key] = PatientFeatures(patient: r)
            // The pipeline filed the Patient under its keys already (its index entries).
            keys[w.key] = filedKeys(w)
        }
        let stored = try await lookup(Set(keys.values.joined()))
        plan.blockingKeys = Set(stored.keys)
        try await workspace.loadPersons(ofWritten: patients.map(\.key))
        // The unit's stored candidates read in a few queries up front: named (their keys looked
        // up by record number) only when selected, except where other writers need every holder
        // of a key named for the assumptions below.
        var wanted = Set<Int>()
        for (_, k) in keys { wanted.formUnion(Self.select(k.compactMap { b in stored[b].map { (b, $0) } })) }
        try await workspace.name(store.hasOtherWriters ? Set(stored.values.joined()) : wanted)
        try await workspace.loadPatients(Set(wanted.compactMap { workspace.recordKeys[$0] }).subtracting(features.keys))
        for write in patients {
            switch write.action {
            case .delete:
                if let person = try await workspace.person(of: write.key) {
                    workspace.unlink(write.key, from: person)
                    plan.outcomes[write.key] = .removed
                }
            case .create, .update:
                guard let resource = write.resource, let f = features[write.key] else { continue }
                let (outcome, person) = try await match(write.key, resource, f, keys[write.key] ?? [], stored, workspace, &plan,
                                                        previous: previous[write.key])
                plan.outcomes[write.key] = outcome
                plan.persons[write.key] = person
            }
        }
        // The decisions rest on what the lookup found: a registration sharing any of these keys,
        // committed meanwhile by another node, sends the unit back to be planned again (a single
        // writer process needs no such check: its plans and commits do not interleave).
        for used in stored.keys.sorted().chunked(2000) where store.hasOtherWriters {
            let query = SearchQuery(type: "Patient", clauses: [
                .init(parameter: BlockingKeys.parameter, values: used.map { .token(system: nil, code: $0) })])
            let expected = Array(Set(used.flatMap { stored[$0]!.compactMap { workspace.recordKeys[$0] } }))
            plan.assumptions.append(Assumption(query: query, expected: expected, locks: used.map { "empi:" + $0 }))
        }
        plan.writes += try await workspace.personWrites()
        return plan
    }

    /// Stored Patients (record numbers) per blocking key, in one lookup; keys shared by more than
    /// `maxCandidatesPerKey` records are too common to block on and left out.
    func lookup(_ keys: Set<String>) async throws -> [String: [Int]] {
        guard !keys.isEmpty else { return [:] }
        let result = try await store.resources(of: "Patient", withToken: BlockingKeys.parameter, codes: Array(keys),
                                               limitPerCode: rules.maxCandidatesPerKey)
        var found = result.matches
        // Keys nobody has yet still guard against a concurrent first registration.
        for key in keys where found[key] == nil && !result.overLimit.contains(key) { found[key] = [] }
        common.keys.withLock { c in
            c.formUnion(result.overLimit)
            c.subtract(found.keys)
        }
        return found
    }

    /// Candidate records of a Patient being written: those sharing a blocking key, stored or
    /// written earlier in this unit.
    func candidates(_ key: ResourceKey, _ keys: [String], _ stored: [String: [Int]],
                    _ workspace: LinkageWorkspace) async throws -> Set<ResourceKey> {
        var found: [(String, [CandidateID])] = []
        for blockKey in keys {
            guard let fromStore = stored[blockKey] else { continue }
            let inUnit = workspace.unitKeys[blockKey] ?? []
            workspace.unitKeys[blockKey, default: []].append(key)
            guard fromStore.count + inUnit.count <= rules.maxCandidatesPerKey else { continue }
            let records = fromStore.map { workspace.recordKeys[$0].map(CandidateID.record) ?? .stored($0) } + inUnit.map(CandidateID.record)
            found.append((blockKey, records.filter { $0 != .record(key) }))
        }
        var selected = Set<ResourceKey>()
        var unnamed: [Int] = []
        for candidate in Self.select(found) {
            switch candidate {
            case .record(let k): selected.insert(k)
            case .stored(let rid): unnamed.append(rid)
            }
        }
        // Selected here but not up front (the unit's own writes changed which keys count).
        if !unnamed.isEmpty {
            try await workspace.name(Set(unnamed))
            selected.formUnion(unnamed.compactMap { workspace.recordKeys[$0] }.filter { $0 != key })
        }
        return selected
    }

    /// A candidate: a stored record not named yet (its record number), or a named one.
    enum CandidateID: Hashable {
        case stored(Int)
        case record(ResourceKey)
    }

    /// The candidates worth scoring among those the blocking keys found: all of them when they are
    /// few, else those sharing an identifier, phone or mother's ID, or at least two keys (a true
    /// match almost always shares several keys; a namesake born the same year shares one). Keeps
    /// a common name in a region of millions from costing hundreds of record reads.
    @_specialize(where Record == Int)
    @_specialize(where Record == CandidateID)
    static func select<Record: Hashable>(_ found: [(key: String, records: [Record])]) -> Set<Record> {
        var shared: [Record: Int] = [:]
        var strong = Set<Record>()
        for (key, records) in found {
            let isStrong = key.hasPrefix("rid:") || key.hasPrefix("idf:") || key.hasPrefix("tel:") || key.hasPrefix("mom:")
            for r in records {
                shared[r, default: 0] += 1
                if isStrong { strong.insert(r) }
            }
        }
        if shared.count <= 32 { return Set(shared.keys) }
        return Set(shared.filter { $0.value >= 2 || strong.contains($0.key) }.keys)
    }

    /// Stored Patients that may be the person a Patient resource describes (`Patient/$match`),
    /// best first, with their match probability. Nothing is written.
    public func candidates(for resource: JSONObject) async throws -> [(key: ResourceKey, probability: Double)] {
        let features = PatientFeatures(patient: resource)
        let workspace = LinkageWorkspace(store: store, protection: protection)
        // The candidates a create would score (the same selection among the key holders).
        let found = try await lookup(Set(blockingKeys(features)))
        try await workspace.name(Self.select(found.map { (key: $0.key, records: $0.value) }))
        let keys = Set(workspace.recordKeys.values)
        try await workspace.load(keys)
        return keys.compactMap { key in
            workspace.patients[key].map { (key, scorer.score(Comparator.compare(features, $0.features)).probability) }
        }.sorted { $0.probability != $1.probability ? $0.probability > $1.probability : $0.key.id < $1.key.id }
    }

    /// Whether the Person is known under a resident ID number that the record's (valid) number is
    /// neither equal to nor one typo away from.
    static func conflictsOnResidentID(_ features: PatientFeatures, _ person: PersonState) -> Bool {
        guard let id = features.residentID?.value else { return false }
        let known = (person.original["identifier"]?.arrayValue ?? []).compactMap { i -> String? in
            guard i["system"]?.stringValue == IdentifierSystems.residentID, let v = i["value"]?.stringValue else { return nil }
            return (try? ResidentID(v))?.value
        }
        return !known.isEmpty && !known.contains { $0 == id || Comparator.nearMiss($0, id) }
    }

    /// The Person a Patient is linked to, and every Patient linked to that Person (PIX).
    public func linkedRecords(of patient: ResourceKey) async throws -> (person: ResourceKey, patients: [ResourceKey])? {
        let workspace = LinkageWorkspace(store: store, protection: protection)
        guard let person = try await workspace.person(of: patient), let state = workspace.persons[person] else { return nil }
        return (person, state.patientLinks)
    }

    /// The Patients linked to a Person (nil: no such Person).
    public func patients(of person: ResourceKey) async throws -> [ResourceKey]? {
        try await LinkageWorkspace(store: store, protection: protection).person(person)?.patientLinks
    }

    func match(_ key: ResourceKey, _ resource: JSONObject, _ features: PatientFeatures, _ keys: [String],
               _ stored: [String: [Int]], _ workspace: LinkageWorkspace,
               _ plan: inout LinkagePlan, previous: ResourceKey? = nil) async throws -> (MatchOutcome, ResourceKey) {
        workspace.patients[key] = (resource, features)
        let current = try await workspace.person(of: key)
        let candidates = try await candidates(key, keys, stored, workspace)
        if let current, workspace.persons[current]?.assurance(of: key) == "level4" {
            workspace.refresh(current, latest: key)
            return (.manual, current)
        }
        try await workspace.loadPatients(candidates)
        // Scored first; only the Persons of candidates worth a review are read.
        let scored = candidates.compactMap { candidate -> (ResourceKey, Double, PairComparison)? in
            guard let other = workspace.patients[candidate]?.features else { return nil }
            let comparison = Comparator.compare(features, other)
            let p = scorer.score(comparison).probability
            return p >= rules.reviewThreshold ? (candidate, p, comparison) : nil
        }
        try await workspace.loadPersons(of: workspace.unknownPersons(scored.map(\.0)))
        // The best probability per Person over its linked candidates.
        var best: [ResourceKey: Double] = [:]
        // Persons with a linked record that alone justifies linking automatically.
        var sufficient = Set<ResourceKey>()
        for (candidate, p, comparison) in scored {
            guard let person = workspace.personOfPatient[candidate],
                  let state = workspace.persons[person], state.active, !state.notMatch.contains(key) else { continue }
            best[person] = max(best[person] ?? 0, p)
            if p >= rules.autoLinkThreshold && !Comparator.mayBeRelatives(comparison)
                && (!rules.requireCorroboration || Comparator.corroborates(comparison)) {
                sufficient.insert(person)
            }
        }
        // Guards on top of the score, for patient safety (a false link shows one resident's record
        // to another): never link automatically across two different resident ID numbers known for
        // the Person, nor a record that may be a twin or sibling of every linked record it matches,
        // nor on name and dates alone without an identifier, phone or street agreeing.
        for (person, p) in best where p >= rules.autoLinkThreshold {
            let conflicting = workspace.persons[person].map { Self.conflictsOnResidentID(features, $0) } ?? false
            if conflicting || !sufficient.contains(person) {
                best[person] = min(p, (rules.autoLinkThreshold + rules.reviewThreshold) / 2)
            }
        }
        let ranked = best.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.id < $1.key.id }
        if let top = ranked.first, top.value >= rules.autoLinkThreshold {
            if current != top.key {
                if let current { workspace.unlink(key, from: current) }
                workspace.link(key, to: top.key, assurance: "level3")
            }
            workspace.refresh(top.key, latest: key)
            let duplicates = ranked.dropFirst().filter { $0.value >= rules.autoLinkThreshold }
            for d in duplicates {
                plan.writes.append(ReviewItems.possibleDuplicate(top.key, d.key, score: d.value))
            }
            return (.match, top.key)
        }
        // Not an automatic match: the record keeps (or gets) a Person of its own.
        let person: ResourceKey
        if let current, workspace.persons[current]?.patientLinks.count == 1 {
            person = current
        } else if current == nil, let previous, let state = try await workspace.person(previous), !state.notMatch.contains(key),
                  state.links.contains(where: { $0.assurance == "level4" }) {
            person = previous
            workspace.link(key, to: person, assurance: "level3")
        } else {
            if let current { workspace.unlink(key, from: current) }
            person = workspace.newPerson()
            workspace.link(key, to: person, assurance: "level3")
        }
        workspace.refresh(person, latest: key)
        let possible = ranked.filter { $0.value >= rules.reviewThreshold && $0.key != person }
        if !possible.isEmpty {
            plan.writes.append(ReviewItems.possibleMatch(key, person: person, candidates: possible.map { ($0.key, $0.value) }))
            return (.possibleMatch, person)
        }
        return (.noMatch, person)
    }
}

/// The blocking keys found too common to block on, shared by every copy of the index.
final class CommonKeys: Sendable {
    let keys = Mutex<Set<String>>([])
}
