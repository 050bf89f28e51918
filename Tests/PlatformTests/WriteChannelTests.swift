import Access
import FHIRModel
import Foundation
import HL7v2
import HealthCard
@testable import Platform
import BulkImport
import Cards
@testable import Gateway
import Store
import StoreTestSupport
import XCTest

/// Every channel that writes resources goes through one write pipeline (ADR 017), so every channel
/// applies the same rules. Each rule is tried on each channel, without HTTP: a resident writes
/// nothing about another resident; a facility writes nothing as another facility or over another
/// facility's record; every accepted write has exactly one audit event; a refused unit stores
/// nothing of itself.
final class WriteChannelTests: XCTestCase {
    struct Region {
        let platform: FHIRService
        let a: FHIRService          // facility A's system
        let b: FHIRService          // facility B's system (treats resident 2 too)
        let resident1: FHIRService
        let p1: String, p2: String  // resident 1 and 2, registered at A
        let o2: String              // A's Observation of resident 2
        let store: any ResourceStore
    }

    static func facility(_ id: String) -> Principal {
        Principal(kind: .client, subject: "his-" + id, role: .facilitySystem, facility: id, scopes: SMARTScope.parseList("system/*.cruds"))
    }

    static func patient(_ family: String, _ given: String, born: String) -> JSON {
        json(#"{"resourceType":"Patient","name":[{"family":"\#(family)","given":["\#(given)"]}],"gender":"female","birthDate":"\#(born)"}"#)
    }

    static func observation(_ patient: String, id: String? = nil, source: String? = nil, code: String = "8867-4") -> JSON {
        let idMember = id.map { #""id":"\#($0)","# } ?? ""
        let meta = source.map { #""meta":{"source":"\#($0)"},"# } ?? ""
        return json(#"{"resourceType":"Observation",\#(idMember)\#(meta)"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"\#(code)"}]},"subject":{"reference":"Patient/\#(patient)"},"valueQuantity":{"value":72,"unit":"/min"}}"#)
    }

    static func consent(_ patient: String, id: String? = nil) -> JSON {
        let idMember = id.map { #""id":"\#($0)","# } ?? ""
        return json(#"{"resourceType":"Consent",\#(idMember)"status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/\#(patient)"},"provision":{"type":"deny"}}"#)
    }

    static func json(_ text: String) -> JSON { try! JSONParser.parse(Array(text.utf8)) }

    func withRegion(_ body: (Region) async throws -> Void) async throws {
        try await withEachBackend { test in
            let service = FHIRService(store: test.store)
            let a = service.acting(as: Self.facility("org-a")), b = service.acting(as: Self.facility("org-b"))
            let p1 = try await a.create("Patient", body: Self.patient("王", "芳", born: "1970-03-01")).key!.id
            let p2 = try await a.create("Patient", body: Self.patient("刘", "静", born: "1985-07-09")).key!.id
            let o2 = try await a.create("Observation", body: Self.observation(p2)).key!.id
            // B treats resident 2: it may read A's records of them (and so find them in a match).
            _ = try await b.create("Encounter", body: Self.json(#"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/\#(p2)"}}"#))
            let resident = Principal(kind: .user, subject: "resident-1", role: .resident, scopes: SMARTScope.parseList("patient/*.cruds"),
                                     patient: "Patient/\(p1)")
            try await body(Region(platform: service.acting(as: .platform), a: a, b: b, resident1: service.acting(as: resident),
                                  p1: p1, p2: p2, o2: o2, store: test.store))
        }
    }

    /// What kind of refusal a call met (nil: it succeeded).
    func refusal(_ call: () async throws -> Any) async -> FHIRError.Category? {
        do { _ = try await call(); return nil } catch let error as FHIRError { return error.category } catch { return .internal }
    }

    func count(_ r: Region, _ type: String, _ query: String) async throws -> Int {
        let parsed = try SearchQueryParser().parse(type: type, query: query)
        return try await r.store.search(parsed, limit: 1000).count
    }

    /// A domain service of the kind the next issues add: it writes only through the pipeline.
    struct ReminderService {
        let service: FHIRService
        func remind(_ patient: String) async throws -> [WriteOutcome] {
            let communication = WriteChannelTests.json(#"{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/\#(patient)"},"payload":[{"contentString":"随访提醒"}]}"#)
            return try await service.writePipeline.write([WriteRequest(key: ResourceKey("Communication", IngestPipeline.newID()), method: "POST",
                                                                       resource: communication)], as: .operation("remind"))
        }
    }

    func importFile(_ service: FHIRService, _ resources: [JSON]) async throws -> String? {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("channel-\(UUID().uuidString).ndjson").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = resources.map { String(decoding: JSONWriter.bytes($0), as: UTF8.self) }.joined(separator: "\n")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return await BulkImporter(service: service).importFile(path).error
    }

    func test_aResidentWritesNothingAboutAnotherResident_onAnyChannel() async throws {
        try await withRegion { r in
            let me = r.resident1, other = r.p2
            let before = try await count(r, "Observation", "subject=Patient/\(other)")
            let consentsBefore = try await count(r, "Consent", "patient=Patient/\(other)")
            let patch = Self.json(#"[{"op":"replace","path":"/patient/reference","value":"Patient/\#(other)"}]"#)
            let ownConsent = try await me.create("Consent", body: Self.consent(r.p1))
            XCTAssertEqual(ownConsent.disposition, .created, "a resident writes about themselves")
            let own = try XCTUnwrap(ownConsent.key?.id)

            var refused: [String: FHIRError.Category?] = [:]
            refused["create Observation"] = await refusal { try await me.create("Observation", body: Self.observation(other)) }
            refused["create Consent"] = await refusal { try await me.create("Consent", body: Self.consent(other)) }
            refused["update own Consent to the other"] = await refusal { try await me.update("Consent", own, body: Self.consent(other, id: own)) }
            refused["patch"] = await refusal { try await me.patch("Consent", own, patch: patch) }
            refused["delete the other's record"] = await refusal { try await me.delete("Observation", r.o2) }
            refused["conditional create"] = await refusal { try await me.create("Observation", body: Self.observation(other), ifNoneExist: "code=none") }
            refused["conditional delete"] = await refusal { try await me.conditionalDelete("Observation", query: "_id=\(r.o2)") }
            refused["conditional update"] = await refusal { try await me.conditionalUpdate("Consent", query: "_id=nothing", body: Self.consent(other)) }
            refused["domain service"] = await refusal { try await ReminderService(service: me).remind(other) }
            for (channel, status) in refused { XCTAssertEqual(status, .forbidden, channel) }
            let clientID = "c-" + UUID().uuidString.prefix(8).lowercased()
            let update = await refusal { try await me.update("Consent", clientID, body: Self.consent(other, id: clientID)) }
            XCTAssertEqual(update, .forbidden, "update with the resident's own id for a new Consent about another resident")


            // A transaction fails whole: the resident's own Consent in it is not stored either.
            let ownBefore = try await count(r, "Consent", "patient=Patient/\(r.p1)")
            let transaction = Self.json(#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":\#(String(decoding: JSONWriter.bytes(Self.consent(r.p1)), as: UTF8.self)),"request":{"method":"POST","url":"Consent"}},{"resource":\#(String(decoding: JSONWriter.bytes(Self.consent(other)), as: UTF8.self)),"request":{"method":"POST","url":"Consent"}}]}"#)
            let status = await refusal { try await BundleProcessor(service: me).process(transaction, returnRepresentation: false) }
            XCTAssertEqual(status, .forbidden, "transaction")
            let ownAfterTransaction = try await count(r, "Consent", "patient=Patient/\(r.p1)")
            XCTAssertEqual(ownAfterTransaction, ownBefore, "nothing of a refused transaction is stored")

            // A batch entry fails alone.
            var batch = transaction
            if case .object(var o) = batch { o["type"] = .string("batch"); batch = .object(o) }
            let answers = try await BundleProcessor(service: me).process(batch, returnRepresentation: false).entries.map(\.status)
            XCTAssertEqual(answers.map { String($0.prefix(3)) }, ["201", "403"], "batch")

            // Import: the whole chunk is refused.
            let imported = try await importFile(me, [Self.consent(r.p1), Self.consent(other)])
            XCTAssertNotNil(imported, "import of a record about another resident")
            let ownAfterImport = try await count(r, "Consent", "patient=Patient/\(r.p1)")
            XCTAssertEqual(ownAfterImport, ownBefore + 1, "only the batch's own Consent was stored")

            // An e-health card is issued at a facility's counter, never by a resident.
            let card = await refusal {
                try await HealthCardService(service: me, keys: try Self.cardKeys(), uses: HealthCardService.CodeUses()).issue(Self.json(#"{"patient":"Patient/\#(other)"}"#))
            }
            XCTAssertEqual(card, .forbidden, "card issuance")

            let after = try await count(r, "Observation", "subject=Patient/\(other)")
            XCTAssertEqual(after, before, "nothing about resident 2 was stored")
            let consentsAfter = try await count(r, "Consent", "patient=Patient/\(other)")
            XCTAssertEqual(consentsAfter, consentsBefore)
            let stillThere = try await r.store.read(ResourceKey("Observation", r.o2))
            XCTAssertEqual(stillThere?.deleted, false)
        }
    }

    func test_aFacilityWritesNothingAsAnotherFacility_onAnyChannel() async throws {
        try await withRegion { r in
            let b = r.b, aSource = FHIRService.facilitySource("org-a")
            let aRecord = Self.observation(r.p2, id: r.o2)
            let patch = Self.json(#"[{"op":"replace","path":"/status","value":"amended"}]"#)
            var refused: [String: FHIRError.Category?] = [:]
            refused["create as A"] = await refusal { try await b.create("Observation", body: Self.observation(r.p2, source: aSource)) }
            refused["update A's record"] = await refusal { try await b.update("Observation", r.o2, body: aRecord) }
            refused["patch A's record"] = await refusal { try await b.patch("Observation", r.o2, patch: patch) }
            refused["delete A's record"] = await refusal { try await b.delete("Observation", r.o2) }
            refused["conditional create as A"] = await refusal {
                try await b.create("Observation", body: Self.observation(r.p2, source: aSource), ifNoneExist: "code=none")
            }
            refused["conditional update of A's record"] = await refusal { try await b.conditionalUpdate("Observation", query: "_id=\(r.o2)", body: aRecord) }
            refused["conditional delete of A's record"] = await refusal { try await b.conditionalDelete("Observation", query: "_id=\(r.o2)") }
            refused["domain service as A"] = await refusal {
                let communication = Self.json(#"{"resourceType":"Communication","status":"completed","meta":{"source":"\#(aSource)"},"subject":{"reference":"Patient/\#(r.p2)"}}"#)
                return try await b.writePipeline.write([WriteRequest(key: ResourceKey("Communication", IngestPipeline.newID()), method: "POST",
                                                                     resource: communication)], as: .operation("remind"))
            }
            for (channel, status) in refused { XCTAssertEqual(status, .forbidden, channel) }

            let mine = String(decoding: JSONWriter.bytes(Self.observation(r.p2, code: "2708-6")), as: UTF8.self)
            let transaction = Self.json(#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":\#(mine),"request":{"method":"POST","url":"Observation"}},{"resource":\#(String(decoding: JSONWriter.bytes(aRecord), as: UTF8.self)),"request":{"method":"PUT","url":"Observation/\#(r.o2)"}}]}"#)
            let status = await refusal { try await BundleProcessor(service: b).process(transaction, returnRepresentation: false) }
            XCTAssertEqual(status, .forbidden, "transaction")
            let stored = try await count(r, "Observation", "code=2708-6")
            XCTAssertEqual(stored, 0, "nothing of a refused transaction is stored")
            var batch = transaction
            if case .object(var o) = batch { o["type"] = .string("batch"); batch = .object(o) }
            let answers = try await BundleProcessor(service: b).process(batch, returnRepresentation: false).entries.map(\.status)
            XCTAssertEqual(answers.map { String($0.prefix(3)) }, ["201", "403"], "batch")

            let imported = try await importFile(b, [Self.observation(r.p2, code: "2339-0"), Self.observation(r.p2, source: aSource)])
            XCTAssertNotNil(imported, "import as another facility")
            let importedMine = try await count(r, "Observation", "code=2339-0")
            XCTAssertEqual(importedMine, 0)

            // HL7: a message's records are its sender's facility's, whatever it says.
            _ = try await ClientRegistry.register(name: "HIS-B", facility: "org-b", scopes: "system/*.cruds", jwks: nil,
                                                  hl7Senders: ["HIS^hospital-b"], in: r.store)
            let message = [
                "MSH|^~\\&|HIS|hospital-b|HUITONG|platform|20261124103000||ADT^A04^ADT_A04|CH1|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
                "EVN|A04|20261124103000",
                "PID|1||B77^^^hospital-b^MR||孙^丽^^^^^L||19900202|F",
                "PV1|1|O|门诊^1||||D1^李^医生||||||||||||VB1|||||||||||||||||||||||||20261124083000",
            ].joined(separator: "\r")
            let answer = await HL7Gateway(service: r.platform).handle(Array(message.utf8), peer: "test")
            let ack = try ER7.parse(String(decoding: answer, as: UTF8.self))
            XCTAssertEqual(ack["MSA"]?[1].value, "AA")
            let registered = try await r.store.search(try SearchQueryParser().parse(type: "Patient", query: "family=孙"), limit: 10)
            XCTAssertEqual(registered.count, 1)
            let record = try await r.store.read(try XCTUnwrap(registered.first))
            XCTAssertEqual(PatientDataGate.sourceFacility(record?.content), "org-b")

            // A card is issued only for a resident the facility may read: A's resident 1 is not B's.
            let card = await refusal {
                try await HealthCardService(service: b, keys: try Self.cardKeys(), uses: HealthCardService.CodeUses()).issue(Self.json(#"{"patient":"Patient/\#(r.p1)"}"#))
            }
            XCTAssertEqual(card, .notFound, "card issuance for a resident B may not read")

            let current = try await r.store.read(ResourceKey("Observation", r.o2))
            XCTAssertEqual(current?.version, 1, "A's record is unchanged")
        }
    }

    func test_everyAcceptedWrite_hasExactlyOneAuditEvent_onEveryChannel() async throws {
        try await withRegion { r in
            var written: [ResourceKey] = []
            let a = r.a
            func keep(_ result: InteractionResult) throws { written.append(try XCTUnwrap(result.key)) }
            try keep(try await a.create("Observation", body: Self.observation(r.p1)))
            let id = "obs-" + UUID().uuidString.prefix(8).lowercased()
            try keep(try await a.update("Observation", id, body: Self.observation(r.p1, id: id)))
            try keep(try await a.patch("Observation", id, patch: Self.json(#"[{"op":"replace","path":"/status","value":"amended"}]"#)))
            try keep(try await a.create("Observation", body: Self.observation(r.p1, code: "9279-1"), ifNoneExist: "code=9279-1"))
            try keep(try await a.conditionalUpdate("Observation", query: "code=8302-2", body: Self.observation(r.p1, code: "8302-2")))
            try keep(try await a.delete("Observation", id))
            let deletable = try await a.create("Observation", body: Self.observation(r.p1, code: "3141-9"))
            try keep(deletable)
            try keep(try await a.conditionalDelete("Observation", query: "code=3141-9"))
            let bundle = Self.json(#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":\#(String(decoding: JSONWriter.bytes(Self.observation(r.p1, code: "39156-5")), as: UTF8.self)),"request":{"method":"POST","url":"Observation"}}]}"#)
            _ = try await BundleProcessor(service: a).process(bundle, returnRepresentation: false)
            var batch = bundle
            if case .object(var o) = batch { o["type"] = .string("batch"); batch = .object(o) }
            _ = try await BundleProcessor(service: a).process(batch, returnRepresentation: false)
            let importError = try await importFile(a, [Self.observation(r.p1, code: "59408-5")])
            XCTAssertNil(importError)
            let reminders = try await ReminderService(service: a).remind(r.p1)
            written += reminders.map(\.key)
            for code in ["39156-5", "59408-5"] {
                written += try await r.store.search(try SearchQueryParser().parse(type: "Observation", query: "code=\(code)"), limit: 10)
            }
            XCTAssertEqual(written.filter { $0.type == "Observation" }.count, 11)

            // Each write is named by exactly one event that is not a read (C, U, D; E for an operation's units:
            // an import, a domain service).
            let events = try await r.store.auditEvents(patients: [], before: nil, limit: 10_000).map {
                AuditEventBuilder.render($0.content, seq: $0.seq, hash: $0.hash)
            }
            var writesByKey: [String: Int] = [:]
            for event in events where event["action"]?.stringValue != "R" {
                for entity in event["entity"]?.arrayValue ?? [] {
                    if let reference = entity["what"]?["reference"]?.stringValue { writesByKey[reference, default: 0] += 1 }
                }
            }
            // The Observation created with its client id, then patched and deleted, was written three times: three events name it.
            let expected = Dictionary(written.map { ($0.description, 1) }, uniquingKeysWith: +)
            for (key, times) in expected {
                XCTAssertEqual(writesByKey[key], times, "audit events naming the write of \(key)")
            }
        }
    }

    static func cardKeys() throws -> CardKeyring {
        CardKeyring(root: try CardRootKey(fileText: "0123456789ABCDEFFEDCBA9876543210"), offline: try OfflineCardKeys(pems: [OfflineCardKeys.newPEM()]))
    }
}
