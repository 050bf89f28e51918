import Access
import FHIRModel
import Foundation
import Logging
import Platform
@_spi(WritePipeline) import Store
import StoreTestSupport
import XCTest

/// The access decision as the store's SQL makes it (ADR 016), on every backend: consent rules
/// flattened into `idx_consent` decide what `ConsentEvaluator` decides by walking the provisions,
/// for random consents, readers, record types, instants and sensitive labels.
final class AccessDecisionTests: XCTestCase {
    let pipeline = IngestPipeline()
    let facilities = ["f1", "f2", "f3"]
    let types = ["Observation", "Condition"]
    let dates = ["2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]

    func write(_ store: any ResourceStore, _ json: String, type: String, id: String) async throws {
        _ = try await store.commit(WriteUnit(writes: [try pipeline.prepare(try JSONParser.parse(json), type: type, id: id, method: "PUT")]))
    }

    /// A random provision tree, as JSON text.
    func provision(_ rng: inout SplitMix, depth: Int) -> String {
        var members: [String] = []
        switch rng.next() % 4 {
        case 0, 1: members.append(#""type":"deny""#)
        case 2: members.append(#""type":"permit""#)
        default: break
        }
        if rng.next() % 2 == 0 {
            let actors = facilities.filter { _ in rng.next() % 2 == 0 }
            if !actors.isEmpty {
                members.append(#""actor":["# + actors.map { #"{"role":{"text":"r"},"reference":{"reference":"Organization/\#($0)"}}"# }
                    .joined(separator: ",") + "]")
            }
        }
        if rng.next() % 3 == 0 {
            members.append(#""class":[{"code":"\#(types[Int(rng.next() % 2)])"}]"#)
        }
        if rng.next() % 3 == 0 {
            let a = Int(rng.next() % 4), b = Int(rng.next() % 4)
            let start = dates[min(a, b)], end = dates[max(a, b)]
            members.append(rng.next() % 2 == 0 ? #""period":{"start":"\#(start)","end":"\#(end)"}"# : #""period":{"start":"\#(start)"}"#)
        }
        if rng.next() % 4 == 0 {
            members.append(#""securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"\#(rng.next() % 2 == 0 ? "HIV" : "PSY")"}]"#)
        }
        if depth < 3 {
            let n = Int(rng.next() % 3)
            if n > 0 { members.append(#""provision":["# + (0..<n).map { _ in provision(&rng, depth: depth + 1) }.joined(separator: ",") + "]") }
        }
        if members.isEmpty { members.append(#""class":[{"code":"Condition"}]"#) }
        return "{" + members.joined(separator: ",") + "}"
    }

    func consent(_ provision: String) -> String {
        #"{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/p"},"provision":\#(provision)}"#
    }

    func test_flattenedConsentRules_decideAsTheEvaluatorDoes() async throws {
        try await withEachBackend { test in
            let store = test.store
            try await self.write(store, #"{"resourceType":"Patient","id":"p"}"#, type: "Patient", id: "p")
            // Every reader treats the resident now, so that only the consent decides.
            for f in self.facilities {
                try await self.write(store, #"{"resourceType":"Encounter","id":"e-\#(f)","meta":{"source":"urn:huitong:facility:\#(f)"},"status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/p"}}"#,
                                     type: "Encounter", id: "e-\(f)")
            }
            var rng = SplitMix(seed: 2026)
            let instants = ["2025-12-01", "2026-02-15", "2026-05-01", "2026-08-20", "2026-12-01"].map { FHIRDateTime.parse($0, kind: .dateTime)!.low }
            var checked = 0, disagreements: [String] = []
            for round in 0..<40 {
                // One or two consents of the resident at a time (a refusal in either wins).
                let texts = (0..<(1 + Int(rng.next() % 2))).map { _ in self.consent(self.provision(&rng, depth: 0)) }
                for (i, text) in texts.enumerated() { try await self.write(store, text, type: "Consent", id: "c\(i)") }
                if texts.count == 1 { _ = try await store.commit(WriteUnit(writes: [self.pipeline.prepareDelete(ResourceKey("Consent", "c1"))])) }
                let consents = try texts.map { text -> JSONObject in
                    guard case .object(let o) = try JSONParser.parse(text) else { throw XCTSkip("not an object") }
                    return o
                }
                for f in self.facilities {
                    for type in self.types {
                        for now in instants {
                            for labels in [[], ["HIV"], ["HIV", "PSY"]] {
                                let verdict = ConsentEvaluator.verdict(consents, facility: f, type: type, now: now)
                                let optIns = ConsentEvaluator.optIns(consents, facility: f, type: type, now: now)
                                let expected = verdict != .deny && Set(labels).isSubset(of: optIns)
                                let scope = ReadScope(reader: .facility(f, clinical: true), now: now)
                                let subject = AccessSubject(type: type, facility: "writer", compartment: "p", sensitive: labels)
                                let actual = try await store.decide(subject, scope: scope)
                                checked += 1
                                if actual != expected {
                                    disagreements.append("round \(round) \(f) \(type) \(now) \(labels): SQL \(actual), evaluator \(expected) — \(texts)")
                                }
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(checked, 40 * 3 * 2 * 5 * 3)
            XCTAssertEqual(disagreements.count, 0, disagreements.prefix(3).joined(separator: "\n"))
        }
    }

    func test_aConsentAFacilityRecorded_refusesButNeverPermits() async throws {
        try await withEachBackend { test in
            let store = test.store
            try await self.write(store, #"{"resourceType":"Patient","id":"p"}"#, type: "Patient", id: "p")
            try await self.write(store, #"{"resourceType":"Encounter","id":"e","meta":{"source":"urn:huitong:facility:f1"},"status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/p"}}"#,
                                 type: "Encounter", id: "e")
            let now = FHIRDateTime.parse("2026-06-01", kind: .dateTime)!.low
            let scope = ReadScope(reader: .facility("f1", clinical: true), now: now)
            let hiv = AccessSubject(type: "Condition", facility: "f2", compartment: "p", sensitive: ["HIV"])
            let plain = AccessSubject(type: "Condition", facility: "f2", compartment: "p", sensitive: [])
            let optIn = #"{"type":"permit","actor":[{"role":{"text":"r"},"reference":{"reference":"Organization/f1"}}],"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}"#
            // Written by facility f1 for itself: opts nothing in.
            try await self.write(store, self.consent(optIn).replacingOccurrences(of: #""resourceType":"Consent","#,
                                                                                    with: #""resourceType":"Consent","meta":{"source":"urn:huitong:facility:f1"},"#),
                                 type: "Consent", id: "c")
            let forged = try await store.decide(hiv, scope: scope)
            XCTAssertFalse(forged)
            // The resident's own opt-in (no facility wrote it) does.
            try await self.write(store, self.consent(optIn), type: "Consent", id: "c")
            let granted = try await store.decide(hiv, scope: scope)
            XCTAssertTrue(granted)
            // A refusal a facility recorded counts.
            try await self.write(store, self.consent(#"{"type":"deny"}"#).replacingOccurrences(of: #""resourceType":"Consent","#,
                                                                                                   with: #""resourceType":"Consent","meta":{"source":"urn:huitong:facility:f3"},"#),
                                 type: "Consent", id: "c2")
            let refused = try await store.decide(plain, scope: scope)
            XCTAssertFalse(refused)
        }
    }

    func test_theDecision_ownRecordsAlways_othersByTreatmentConsentAndRole() async throws {
        try await withEachBackend { test in
            let store = test.store
            let now = FHIRDateTime.parse("2026-06-01", kind: .dateTime)!.low
            // Resident p: registered at a (p) and b (pb), one master Person; c treats them now.
            try await self.write(store, #"{"resourceType":"Patient","id":"p","meta":{"source":"urn:huitong:facility:a"}}"#, type: "Patient", id: "p")
            try await self.write(store, #"{"resourceType":"Patient","id":"pb","meta":{"source":"urn:huitong:facility:b"}}"#, type: "Patient", id: "pb")
            try await self.write(store, #"{"resourceType":"Person","id":"m","link":[{"target":{"reference":"Patient/p"}},{"target":{"reference":"Patient/pb"}}]}"#,
                                 type: "Person", id: "m")
            try await self.write(store, #"{"resourceType":"Encounter","id":"e","meta":{"source":"urn:huitong:facility:c"},"status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/pb"}}"#,
                                 type: "Encounter", id: "e")
            func reads(_ reader: ReadScope.Reader, _ type: String, facility: String?, compartment: String?, labels: [String] = []) async throws -> Bool {
                try await store.decide(AccessSubject(type: type, facility: facility, compartment: compartment, sensitive: labels),
                                       scope: ReadScope(reader: reader, now: now))
            }
            let a = ReadScope.Reader.facility("a", clinical: true), b = ReadScope.Reader.facility("b", clinical: true)
            let c = ReadScope.Reader.facility("c", clinical: true)
            let checks: [(String, Bool, Bool)] = [
                ("own record, whoever it is about", try await reads(a, "Condition", facility: "a", compartment: "p"), true),
                ("shared types are everyone's", try await reads(b, "Practitioner", facility: "a", compartment: nil), true),
                ("another facility's record, no treatment", try await reads(b, "Condition", facility: "a", compartment: "p"), false),
                ("registered: the resident's identity records", try await reads(b, "Patient", facility: "a", compartment: "p"), true),
                ("treated through another registration of the resident", try await reads(c, "Condition", facility: "a", compartment: "p"), true),
                ("treated, but a sensitive record needs an opt-in", try await reads(c, "Condition", facility: "a", compartment: "p", labels: ["HIV"]), false),
                ("data no facility wrote is not a free-for-all", try await reads(b, "Condition", facility: nil, compartment: "p"), false),
                ("a record about nobody is its writer's only", try await reads(c, "Observation", facility: "a", compartment: nil), false),
                ("not a clinical role", try await reads(.facility("c", clinical: false), "Condition", facility: "a", compartment: "p"), false),
                ("CDC staff: shared records only", try await reads(.shared(demographics: false), "Condition", facility: "a", compartment: "p"), false),
                ("operators: identity records", try await reads(.shared(demographics: true), "Patient", facility: "a", compartment: "p"), true),
                ("operators: no clinical records", try await reads(.shared(demographics: true), "Condition", facility: "a", compartment: "p"), false),
                ("a resident: their own", try await reads(.resident(patients: ["p", "pb"]), "Condition", facility: "a", compartment: "p"), true),
                ("a resident: nobody else's", try await reads(.resident(patients: ["x"]), "Condition", facility: "a", compartment: "p"), false),
                ("administrators and broken glass", try await reads(.everything, "Condition", facility: "a", compartment: "p", labels: ["HIV"]), true),
            ]
            XCTAssertEqual(checks.filter { $0.1 != $0.2 }.map(\.0), [])
            // The resident refuses c: the treatment no longer opens their records to it.
            try await self.write(store, self.consent(#"{"type":"deny","actor":[{"role":{"text":"r"},"reference":{"reference":"Organization/c"}}]}"#)
                                    .replacingOccurrences(of: "Patient/p", with: "Patient/pb"), type: "Consent", id: "refusal")
            let refused = try await reads(c, "Condition", facility: "a", compartment: "p")
            XCTAssertFalse(refused)
        }
    }

    /// A store written before the access columns existed: its rows carry none of the facts the
    /// decision reads until the start after the upgrade rebuilds them (`PendingReindex`).
    func test_rowsWrittenBeforeTheUpgrade_areRebuiltAtTheNextStart() async throws {
        try await withEachBackend { test in
            let store = test.store
            func bare(_ json: String, _ type: String, _ id: String) throws -> PreparedWrite {
                let full = try self.pipeline.prepare(try JSONParser.parse(json), type: type, id: id, method: "PUT")
                return PreparedWrite(key: full.key, action: full.action, method: full.method, template: full.template, index: [])
            }
            var unit = WriteUnit(writes: [
                try bare(#"{"resourceType":"Patient","id":"p","meta":{"source":"urn:huitong:facility:a"}}"#, "Patient", "p"),
                try bare(#"{"resourceType":"Condition","id":"c","meta":{"source":"urn:huitong:facility:a"},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J45"}]},"subject":{"reference":"Patient/p"}}"#, "Condition", "c"),
                try bare(#"{"resourceType":"Encounter","id":"e","meta":{"source":"urn:huitong:facility:b"},"status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/p"}}"#, "Encounter", "e"),
            ])
            unit.records = [RecordWrite(PlatformRecord(kind: PendingReindex.record.kind, id: PendingReindex.record.id, content: "test"))]
            _ = try await store.commit(unit)
            let own = ReadScope(reader: .facility("a", clinical: true), now: 0)
            let treating = ReadScope(reader: .facility("b", clinical: true), now: 0)
            let before = try await store.readable([ResourceKey("Condition", "c")], scope: own)
            XCTAssertEqual(before, [], "without its columns the row is nobody's")
            let rebuilt = try await PendingReindex.runIfPending(store: store, pipeline: self.pipeline, logger: Logger(label: "test"))
            XCTAssertEqual(rebuilt, 3)
            let afterOwn = try await store.readable([ResourceKey("Condition", "c")], scope: own)
            let afterTreating = try await store.readable([ResourceKey("Condition", "c")], scope: treating)
            XCTAssertEqual(afterOwn, [ResourceKey("Condition", "c")])
            XCTAssertEqual(afterTreating, [ResourceKey("Condition", "c")], "b's open encounter is a treatment relationship again")
            let pending = try await store.record(kind: PendingReindex.record.kind, id: PendingReindex.record.id, now: 0)
            XCTAssertNil(pending)
            let again = try await PendingReindex.runIfPending(store: store, pipeline: self.pipeline, logger: Logger(label: "test"))
            XCTAssertEqual(again, 0)
        }
    }
}
