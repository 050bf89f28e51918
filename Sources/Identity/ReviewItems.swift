import FHIRModel
import Foundation
import NIOCore
import Store

/// Review items of the master index as FHIR `Task`s, so reviewers list them with an ordinary
/// search (`Task?code=https://huitong.health/fhir/CodeSystem/empi|possible-match&status=requested`).
/// Their ids derive from what they are about, so that matching the same record again updates the
/// item instead of piling up new ones.
public enum ReviewItems {
    public static let codeSystem = "https://huitong.health/fhir/CodeSystem/empi"
    /// On a Task input: the match probability of the candidate (`valueDecimal`).
    public static let scoreExtension = "https://huitong.health/fhir/StructureDefinition/match-score"

    /// A Patient that may be a resident already known (POSSIBLE_MATCH): its own Person and the candidates.
    static func possibleMatch(_ patient: ResourceKey, person: ResourceKey, candidates: [(ResourceKey, Double)]) -> IndexWrite {
        task(id: possibleMatchID(patient), code: "possible-match", focus: patient, for: person, candidates: candidates)
    }

    /// Two Persons that both match one record well enough to link: perhaps one resident twice.
    static func possibleDuplicate(_ a: ResourceKey, _ b: ResourceKey, score: Double) -> IndexWrite {
        let (x, y) = a.id < b.id ? (a, b) : (b, a)
        return task(id: possibleDuplicateID(x, y), code: "possible-duplicate", focus: x, for: x, candidates: [(y, score)])
    }

    static func possibleMatchID(_ patient: ResourceKey) -> String { "empi-pm-" + StableHash.hex(patient.reference) }

    static func possibleDuplicateID(_ a: ResourceKey, _ b: ResourceKey) -> String {
        let (x, y) = a.id < b.id ? (a, b) : (b, a)
        return "empi-pd-" + StableHash.hex(x.reference + "+" + y.reference)
    }

    /// The open review item `id`, completed by a decision (nil when there is none open).
    static func settle(_ id: String, store: any ResourceStore, decision: String) async throws -> IndexWrite? {
        let key = ResourceKey("Task", id)
        guard let record = try await store.read(key), !record.deleted, let content = record.content,
              case .object(var o)? = try? JSONParser.parse(content.readableBytesView),
              o["status"]?.stringValue == "requested" else { return nil }
        o["status"] = .string("completed")
        o["businessStatus"] = .object(JSONObject([("text", .string(decision))]))
        o["lastModified"] = .string(FHIRInstant.now())
        return IndexWrite(type: "Task", id: id, resource: o, ifMatch: record.version, method: "PUT")
    }

    /// The record of a reviewer's decision: what, about which records, who, why, when.
    static func decisionRecord(_ decision: ReviewDecision, actor: String, reason: String) -> IndexWrite {
        let (focus, person): (ResourceKey, ResourceKey)
        switch decision {
        case .link(let p, let x), .notMatch(let p, let x), .unlink(let p, let x): (focus, person) = (p, x)
        case .merge(let from, let into), .unmerge(let from, let into): (focus, person) = (from, into)
        }
        let id = UUID().uuidString.lowercased()
        let resource = JSONObject([
            ("resourceType", .string("Task")),
            ("id", .string(id)),
            ("status", .string("completed")),
            ("intent", .string("order")),
            ("code", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(codeSystem)),
                                                                                 ("code", .string("decision-" + decision.code))]))]))]))),
            ("focus", .object(JSONObject([("reference", .string(focus.reference))]))),
            ("for", .object(JSONObject([("reference", .string(person.reference))]))),
            ("authoredOn", .string(FHIRInstant.now())),
            ("requester", .object(JSONObject([("display", .string(actor))]))),
            ("reasonCode", .object(JSONObject([("text", .string(reason))]))),
        ])
        return IndexWrite(type: "Task", id: id, resource: resource, ifMatch: nil, method: "POST")
    }

    static func task(id: String, code: String, focus: ResourceKey, for person: ResourceKey, candidates: [(ResourceKey, Double)]) -> IndexWrite {
        let inputs: [JSON] = candidates.map { candidate, score in
            .object(JSONObject([
                ("extension", .array([.object(JSONObject([("url", .string(scoreExtension)),
                                                          ("valueDecimal", .number(String(format: "%.4f", score)))]))])),
                ("type", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(codeSystem)),
                                                                                      ("code", .string("candidate"))]))]))]))),
                ("valueReference", .object(JSONObject([("reference", .string(candidate.reference))]))),
            ]))
        }
        let resource = JSONObject([
            ("resourceType", .string("Task")),
            ("id", .string(id)),
            ("status", .string("requested")),
            ("intent", .string("proposal")),
            ("code", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(codeSystem)), ("code", .string(code))]))]))]))),
            ("focus", .object(JSONObject([("reference", .string(focus.reference))]))),
            ("for", .object(JSONObject([("reference", .string(person.reference))]))),
            ("authoredOn", .string(FHIRInstant.now())),
            ("input", .array(inputs)),
        ])
        return IndexWrite(type: "Task", id: id, resource: resource, ifMatch: nil, method: "PUT")
    }
}

/// A stable 64-bit FNV-1a hash as 16 hex digits (the same in every process, unlike `Hasher`).
enum StableHash {
    static func hex(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

enum FHIRInstant {
    /// The current time as a FHIR instant (UTC, seconds).
    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date())
    }
}
