import FHIRModel
import Foundation
import Store

/// A reviewer's decision about the master index. Each is MANUAL: links it makes have assurance
/// level4, which matching never changes, and each leaves a completed decision `Task` saying who
/// decided what and why.
public enum ReviewDecision: Sendable {
    /// This Patient is this Person.
    case link(patient: ResourceKey, person: ResourceKey)
    /// This Patient is not this Person (and must not be linked to it automatically again).
    case notMatch(patient: ResourceKey, person: ResourceKey)
    /// Take this Patient out of this Person: it becomes a Person of its own.
    case unlink(patient: ResourceKey, person: ResourceKey)
    /// These two Persons are one resident: `from`'s records move to `into`.
    case merge(from: ResourceKey, into: ResourceKey)
    /// Undo a merge: what came from `from` goes back.
    case unmerge(from: ResourceKey, into: ResourceKey)

    var code: String {
        switch self {
        case .link: "link"
        case .notMatch: "not-match"
        case .unlink: "unlink"
        case .merge: "merge"
        case .unmerge: "unmerge"
        }
    }
}

/// Why a decision cannot be carried out, for the caller to fix.
public struct MasterIndexError: Error, Sendable {
    public enum Kind: Sendable { case unknownRecord, conflict, invalid }
    public let kind: Kind
    public let message: String
}

extension MasterPatientIndex {
    /// The writes of a decision: the Persons it changes (pinned to the versions read), the review
    /// items it settles, and a decision record naming `actor` and `reason`.
    public func plan(_ decision: ReviewDecision, actor: String, reason: String) async throws -> LinkagePlan {
        let workspace = LinkageWorkspace(store: store, protection: protection)
        var plan = LinkagePlan()
        var settled: [String] = []
        func person(_ key: ResourceKey) async throws -> PersonState {
            guard key.type == "Person", let state = try await workspace.person(key) else {
                throw MasterIndexError(kind: .unknownRecord, message: "\(key.reference) is not a Person of the master index")
            }
            return state
        }
        func patient(_ key: ResourceKey) async throws {
            guard key.type == "Patient", let record = try await store.read(key), !record.deleted else {
                throw MasterIndexError(kind: .unknownRecord, message: "\(key.reference) is not a Patient")
            }
            try await workspace.load([key])
        }
        switch decision {
        case .link(let p, let target):
            try await patient(p)
            _ = try await person(target)
            if let current = try await workspace.person(of: p), current != target { workspace.unlink(p, from: current) }
            workspace.persons[target]?.notMatch.remove(p)
            workspace.link(p, to: target, assurance: "level4")
            workspace.refresh(target, latest: p)
            settled.append(ReviewItems.possibleMatchID(p))
        case .notMatch(let p, let target):
            try await patient(p)
            _ = try await person(target)
            workspace.persons[target]?.notMatch.insert(p)
            workspace.persons[target]?.dirty = true
            if try await workspace.person(of: p) == target {
                workspace.unlink(p, from: target)
                let own = workspace.newPerson()
                workspace.link(p, to: own, assurance: "level4")
                workspace.refresh(own, latest: p)
            }
            settled.append(ReviewItems.possibleMatchID(p))
        case .unlink(let p, let target):
            try await patient(p)
            let state = try await person(target)
            guard state.patientLinks.contains(p) else {
                throw MasterIndexError(kind: .conflict, message: "\(p.reference) is not linked to \(target.reference)")
            }
            workspace.unlink(p, from: target)
            workspace.persons[target]?.notMatch.insert(p)
            let own = workspace.newPerson()
            workspace.link(p, to: own, assurance: "level4")
            workspace.refresh(own, latest: p)
        case .merge(let from, let into):
            guard from != into else { throw MasterIndexError(kind: .invalid, message: "A Person cannot be merged into itself") }
            let source = try await person(from)
            _ = try await person(into)
            guard source.active else { throw MasterIndexError(kind: .conflict, message: "\(from.reference) is not active (merged already?)") }
            for link in source.links where link.target.type == "Patient" {
                workspace.unlink(link.target, from: from)
                let provenance: [JSON] = [
                    .object(JSONObject([("url", .string(PersonState.mergedFromExtension)),
                                        ("valueReference", .object(JSONObject([("reference", .string(from.reference))])))])),
                    .object(JSONObject([("url", .string(PersonState.originalAssuranceExtension)), ("valueCode", .string(link.assurance))])),
                ]
                workspace.link(link.target, to: into, assurance: "level4", extensions: provenance)
            }
            workspace.persons[into]?.notMatch.formUnion(source.notMatch)
            // The retired Person points at the one that replaces it.
            workspace.persons[from]?.links = [.init(target: into, assurance: "level4")]
            workspace.persons[from]?.active = false
            workspace.persons[from]?.dirty = true
            workspace.persons[into]?.dirty = true
            settled.append(ReviewItems.possibleDuplicateID(from, into))
        case .unmerge(let from, let into):
            let target = try await person(into)
            _ = try await person(from)
            let moved = target.links.filter { $0.mergedFrom?.person == from }
            guard !moved.isEmpty else { throw MasterIndexError(kind: .conflict, message: "\(into.reference) holds nothing merged from \(from.reference)") }
            workspace.persons[from]?.links.removeAll { $0.target == into }
            for link in moved {
                workspace.unlink(link.target, from: into)
                workspace.link(link.target, to: from, assurance: link.mergedFrom?.assurance ?? "level3")
            }
            workspace.persons[from]?.active = true
            let remaining = workspace.persons[into]?.patientLinks ?? []
            workspace.persons[into]?.active = !remaining.isEmpty
            workspace.persons[from]?.dirty = true
        }
        plan.writes += try await workspace.personWrites()
        for id in settled {
            if let closed = try await ReviewItems.settle(id, store: store, decision: decision.code) { plan.writes.append(closed) }
        }
        plan.writes.append(ReviewItems.decisionRecord(decision, actor: actor, reason: reason))
        return plan
    }
}
