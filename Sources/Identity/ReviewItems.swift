import FHIRModel
import Foundation
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
        task(id: "empi-pm-" + StableHash.hex(patient.reference), code: "possible-match", focus: patient, for: person,
             candidates: candidates)
    }

    /// Two Persons that both match one record well enough to link: perhaps one resident twice.
    static func possibleDuplicate(_ a: ResourceKey, _ b: ResourceKey, score: Double) -> IndexWrite {
        let (x, y) = a.id < b.id ? (a, b) : (b, a)
        return task(id: "empi-pd-" + StableHash.hex(x.reference + "+" + y.reference), code: "possible-duplicate", focus: x, for: x,
                    candidates: [(y, score)])
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
