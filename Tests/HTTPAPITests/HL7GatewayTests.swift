@testable import Access
import FHIRModel
import Foundation
import HL7v2
import NIOCore
import NIOPosix
import Platform
import Gateway
import Store
import StoreTestSupport
import XCTest

/// The HL7 v2 gateway: messages from registered senders become platform data in one transaction
/// (AA), wrong content stores nothing (AE with ERR), messages that cannot be taken are refused
/// (AR), and a message sent again changes nothing.
final class HL7GatewayTests: XCTestCase {
    static let mrn = "urn:huitong:mrn:county"

    struct Setup {
        let gateway: HL7Gateway
        let service: FHIRService
        let store: any ResourceStore
    }

    func withGateway(_ body: @escaping @Sendable (Setup) async throws -> Void) async throws {
        try await withEachBackend { test in
            _ = try await ClientRegistry.register(name: "HIS", facility: "county", scopes: "system/*.cruds", jwks: nil,
                                                  hl7Senders: ["HIS^county-hospital", "^county-lab"], in: test.store)
            let protection = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
            let service = FHIRService(store: test.store, pipeline: IngestPipeline(protection: protection))
            try await body(Setup(gateway: HL7Gateway(service: service), service: service.acting(as: .platform), store: test.store))
        }
    }

    static func msh(_ type: String, _ control: String, sender: String = "HIS|county-hospital", version: String = "2.4", charset: String = "") -> String {
        "MSH|^~\\&|\(sender)|HUITONG|platform|20261124103000||\(type)|\(control)|P|\(version)|||AL|NE|CHN|\(charset)"
    }

    static let pid = "PID|1||M123^^^county-hospital^MR~11010519491231002X^^^CHN^NNCHN||张^三^^^^^L||19491231|F|||建国路1号^^北京市^北京市^100022^CHN^H||^PRN^PH^^^^^^^^^13800138000"

    static func adt(_ event: String, _ control: String, pid: String = pid, pv1: String? = nil) -> String {
        [msh("ADT^\(event)^ADT_\(event)", control), "EVN|\(event)|20261124103000", pid,
         pv1 ?? "PV1|1|I|ward-3^302^1||||D001^李^医生||||||||||||V-01|||||||||||||||||||||||||20261124100000"].joined(separator: "\r")
    }

    static func send(_ s: Setup, _ text: String, charset: Charset = .utf8) async -> HL7Message {
        let answer = await s.gateway.handle(.message(charset.encode(text)), peer: "test")
        return (try? ER7.parse(charset.decode(answer) ?? "")) ?? HL7Message(segments: [])
    }

    static func search(_ s: Setup, _ type: String, _ query: String) async throws -> [JSONObject] {
        let parsed = try SearchQueryParser(protection: s.service.pipeline.protection).parse(type: type, query: query)
        var out: [JSONObject] = []
        for key in try await s.store.search(parsed, limit: 100) {
            let record = try await s.service.read(type, key.id)
            if case .object(let o)? = try? JSONParser.parse(record.content!.readableBytesView) { out.append(o) }
        }
        return out
    }

    func test_concurrentRegistrations_fromManyConnections_areAllStored() async throws {
        try await withGateway { s in
            // Residents alike but for their MRN, given name and phone (as a busy registration desk sends them).
            let codes = try await withThrowingTaskGroup(of: String.self) { group in
                for n in 0..<48 {
                    group.addTask {
                        let pid = "PID|1||R\(n)^^^county-hospital^MR||王^\(n)^^^^^L||19\(n % 4 + 60)0101|M|||人民路\(n % 5)号^^成都市^四川省^610000^CHN^H"
                            + "||^PRN^PH^^^^^^^^^139\(String(format: "%08d", n))"
                        let pv1 = "PV1|1|O|门诊^1||||D1^李^医生||||||||||||VR\(n)|||||||||||||||||||||||||20261124083000"
                        let ack = await Self.send(s, Self.adt("A04", "C\(n)", pid: pid, pv1: pv1))
                        return ack["MSA"]?[1].value ?? "none"
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            XCTAssertEqual(codes, Array(repeating: "AA", count: 48))
            let counts = try await s.store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 48, "every acknowledged registration is stored")
            XCTAssertEqual(counts["Encounter"], 48)
        }
    }

    func test_admissionUpdateAndDischarge_areOnePatientAndOneEncounter() async throws {
        try await withGateway { s in
            // Sent in GB 18030, as many hospital systems do.
            let a01 = Self.adt("A01", "M1").replacingOccurrences(of: "|CHN|", with: "|CHN|GB 18030-2000")
            let ack = await Self.send(s, a01, charset: .gb18030)
            XCTAssertEqual(ack["MSA"]?[1].value, "AA", ER7.serialize(ack))
            XCTAssertEqual(ack["MSA"]?[2].value, "M1")
            XCTAssertEqual(ack["MSH"]?[9].component(1), "ACK")
            XCTAssertEqual(ack["MSH"]?[5].value, "HIS", "answered to the sender")
            let patients = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|M123")
            XCTAssertEqual(patients.count, 1)
            let patient = try XCTUnwrap(patients.first)
            XCTAssertEqual(patient["name"]?[0]?["family"]?.stringValue, "张")
            XCTAssertEqual(patient["name"]?[0]?["given"]?[0]?.stringValue, "三")
            XCTAssertEqual(patient["birthDate"]?.stringValue, "1949-12-31")
            XCTAssertEqual(patient["gender"]?.stringValue, "female")
            XCTAssertEqual(patient["telecom"]?[0]?["value"]?.stringValue, "13800138000")
            XCTAssertEqual(patient["address"]?[0]?["city"]?.stringValue, "北京市")
            let byResidentID = try await Self.search(s, "Patient", "identifier=urn:oid:2.16.156.10011.1.3|11010519491231002X")
            XCTAssertEqual(byResidentID.count, 1, "found by the resident ID number in PID-3's second repetition")
            let encounterFound = try await Self.search(s, "Encounter", "identifier=urn:huitong:visit:county|V-01")
            let encounter = try XCTUnwrap(encounterFound.first)
            XCTAssertEqual(encounter["status"]?.stringValue, "in-progress")
            XCTAssertEqual(encounter["class"]?["code"]?.stringValue, "IMP")
            XCTAssertEqual(encounter["location"]?[0]?["location"]?["display"]?.stringValue, "ward-3 302 1")
            XCTAssertEqual(encounter["participant"]?[0]?["individual"]?["display"]?.stringValue, "李医生")
            XCTAssertEqual(encounter["period"]?["start"]?.stringValue, "2026-11-24T10:00:00+08:00")
            XCTAssertEqual(encounter["subject"]?["reference"]?.stringValue, "Patient/" + (patient["id"]?.stringValue ?? ""))

            // The same message again: the first ACK, nothing written.
            let again = await s.gateway.handle(.message(Charset.gb18030.encode(a01)), peer: "test")
            let first = await s.gateway.handle(.message(Charset.gb18030.encode(a01)), peer: "test")
            XCTAssertEqual(again, first)
            let unchanged = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|M123")
            XCTAssertEqual(unchanged.first?["meta"]?["versionId"]?.stringValue, "1")

            // A08 changes the name; A03 discharges: still one Patient, one Encounter.
            let a08 = await Self.send(s, Self.adt("A08", "M2", pid: Self.pid.replacingOccurrences(of: "张^三", with: "张^三丰")))
            XCTAssertEqual(a08["MSA"]?[1].value, "AA", ER7.serialize(a08))
            let renamed = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|M123")
            XCTAssertEqual(renamed.map { $0["name"]?[0]?["given"]?[0]?.stringValue }, ["三丰"])
            XCTAssertEqual(renamed.first?["id"], patient["id"])
            let a03 = await Self.send(s, Self.adt("A03", "M3", pv1: "PV1|1|I|ward-3^302^1||||D001^李^医生||||||||||||V-01|||||||||||||||||||||||||20261124100000|20261130090000"))
            XCTAssertEqual(a03["MSA"]?[1].value, "AA", ER7.serialize(a03))
            let updated = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|M123")
            XCTAssertEqual(updated.count, 1)
            XCTAssertEqual(updated.first?["meta"]?["versionId"]?.stringValue, "3", "A01, A08, A03: three versions of one Patient")
            let encounters = try await Self.search(s, "Encounter", "identifier=urn:huitong:visit:county|V-01")
            XCTAssertEqual(encounters.count, 1)
            XCTAssertEqual(encounters.first?["status"]?.stringValue, "finished")
            XCTAssertEqual(encounters.first?["period"]?["end"]?.stringValue, "2026-11-30T09:00:00+08:00")

            // A13 cancels the discharge (the HIS repeats the discharge time in PV1-45): the visit is
            // open again, same Encounter; without a visit number there is nothing to reopen (AE).
            let a13 = await Self.send(s, Self.adt("A13", "M4", pv1: "PV1|1|I|ward-3^302^1||||D001^李^医生||||||||||||V-01|||||||||||||||||||||||||20261124100000|20261130090000"))
            XCTAssertEqual(a13["MSA"]?[1].value, "AA", ER7.serialize(a13))
            let reopened = try await Self.search(s, "Encounter", "identifier=urn:huitong:visit:county|V-01")
            XCTAssertEqual(reopened.count, 1)
            XCTAssertEqual(reopened.first?["id"], encounters.first?["id"])
            XCTAssertEqual(reopened.first?["status"]?.stringValue, "in-progress")
            XCTAssertNil(reopened.first?["period"]?["end"])
            XCTAssertEqual(reopened.first?["period"]?["start"]?.stringValue, "2026-11-24T10:00:00+08:00")
            XCTAssertEqual(reopened.first?["location"]?[0]?["status"]?.stringValue, "active")
            let withoutVisit = await Self.send(s, Self.adt("A13", "M5", pv1: "PV1|1|I|ward-3^302^1"))
            XCTAssertEqual(withoutVisit["MSA"]?[1].value, "AE", ER7.serialize(withoutVisit))
            XCTAssertEqual(withoutVisit["ERR"]?[2].component(1), "PV1", ER7.serialize(withoutVisit))
            XCTAssertEqual(withoutVisit["ERR"]?[2].component(3), "19")
        }
    }

    func test_results_reportObservationsAndSpecimen_andBadContentStoresNothing() async throws {
        try await withGateway { s in
            let a04 = await Self.send(s, Self.adt("A04", "R0"))
            XCTAssertEqual(a04["MSA"]?[1].value, "AA")
            var segments = [Self.msh("ORU^R01^ORU_R01", "R1", sender: "LIS|county-lab", version: "2.5"), "PID|1||M123^^^county-hospital^MR||张^三",
                            "OBR|1|P7|F7^LAB|24331-1^Lipid panel^LN|||20261124080000|||||||||||||||20261124093000||||F",
                            "OBX|1|NM|2093-3^Cholesterol^LN||5.20|mmol/L^mmol/L^UCUM|<5.2|H|||F",
                            "OBX|2|SN|2571-8^Triglyceride^LN||<^1.7|mmol/L^mmol/L^UCUM|0-1.7|N|||F",
                            "OBX|3|ST|8251-1^Note^LN||空腹采血 fasting||||||F",
                            "OBX|4|CE|883-9^ABO group^LN||A^A型^L||||||F"]
            for i in 5...20 { segments.append("OBX|\(i)|NM|\(1000 + i)-0^Item \(i)^LN||\(i).5|g/L^g/L^UCUM|1-100|N|||F") }
            segments.append("SPM|1|S7||119297000^Blood^SCT||||||||||||||20261124073000")
            let ack = await Self.send(s, segments.joined(separator: "\r"))
            XCTAssertEqual(ack["MSA"]?[1].value, "AA", ER7.serialize(ack))
            let reports = try await Self.search(s, "DiagnosticReport", "identifier=urn:huitong:order:county|F7")
            let report = try XCTUnwrap(reports.first)
            XCTAssertEqual(report["status"]?.stringValue, "final")
            XCTAssertEqual(report["result"]?.arrayValue?.count, 20)
            XCTAssertEqual(report["code"]?["coding"]?[0]?["system"]?.stringValue, "http://loinc.org")
            XCTAssertEqual(report["issued"]?.stringValue, "2026-11-24T09:30:00+08:00")
            XCTAssertEqual(report["specimen"]?.arrayValue?.count, 1)
            let observations = try await Self.search(s, "Observation", "code=http://loinc.org|2093-3")
            let cholesterol = try XCTUnwrap(observations.first)
            XCTAssertEqual(cholesterol["valueQuantity"]?["value"], .number("5.20"), "the sender's precision is kept")
            XCTAssertEqual(cholesterol["valueQuantity"]?["code"]?.stringValue, "mmol/L")
            XCTAssertEqual(cholesterol["interpretation"]?[0]?["coding"]?[0]?["code"]?.stringValue, "H")
            XCTAssertEqual(cholesterol["referenceRange"]?[0]?["high"]?["value"], .number("5.2"))
            XCTAssertEqual(cholesterol["effectiveDateTime"]?.stringValue, "2026-11-24T08:00:00+08:00")
            let tgs = try await Self.search(s, "Observation", "code=http://loinc.org|2571-8")
            let tg = try XCTUnwrap(tgs.first)
            XCTAssertEqual(tg["valueQuantity"]?["comparator"]?.stringValue, "<")
            let note = try await Self.search(s, "Observation", "code=http://loinc.org|8251-1")
            XCTAssertEqual(note.first?["valueString"]?.stringValue, "空腹采血 fasting")
            let abo = try await Self.search(s, "Observation", "code=http://loinc.org|883-9")
            XCTAssertEqual(abo.first?["valueCodeableConcept"]?["coding"]?[0]?["code"]?.stringValue, "A")
            let patient = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|M123")
            XCTAssertEqual(patient.first?["meta"]?["versionId"]?.stringValue, "1", "a result does not rewrite the registration")
            XCTAssertEqual(patient.first?["name"]?[0]?["given"]?[0]?.stringValue, "三")
            XCTAssertEqual(report["subject"]?["reference"]?.stringValue, "Patient/" + (patient.first?["id"]?.stringValue ?? ""))

            // Wrong content anywhere: AE naming the place, and nothing of the message stored.
            let before = try await s.store.resourceCounts()
            var bad = segments
            bad[0] = Self.msh("ORU^R01^ORU_R01", "R2", sender: "LIS|county-lab", version: "2.5")
            bad[2] = bad[2].replacingOccurrences(of: "F7", with: "F8")
            bad[9] = "OBX|7|NM|1007-0^Item 7^LN||seven|g/L||N|||F"  // the seventh OBX
            let refused = await Self.send(s, bad.joined(separator: "\r"))
            XCTAssertEqual(refused["MSA"]?[1].value, "AE")
            XCTAssertEqual(refused["ERR"]?[2].component(1), "OBX")
            XCTAssertEqual(refused["ERR"]?[2].component(2), "7")
            XCTAssertEqual(refused["ERR"]?[2].component(3), "5")
            XCTAssertEqual(refused["ERR"]?[3].component(1), "102")
            for (message, segment, field, code) in [
                (Self.adt("A01", "E1", pid: "PID|1||||张^三"), "PID", "3", "101"),
                (Self.adt("A01", "E2", pid: "PID|1||X9^^^h^MR||张^三||19491331"), "PID", "7", "102"),
                (Self.adt("A01", "E3", pid: "PID|1||X9^^^h^MR||张^三|||Q"), "PID", "8", "103"),
                (Self.adt("A01", "E4", pid: "PID|1||X9^^^h^MR~110105194912310021^^^CHN^NNCHN"), "PID", "3", "102"),
                // Numbers to Unicode, not digits: once a crash of the whole server.
                (Self.adt("A01", "E5", pid: "PID|1||X9^^^h^MR||张^三||1949123五"), "PID", "7", "102"),
                (Self.adt("A01", "E6", pid: "PID|1||X9^^^h^MR~11010519491231002五^^^CHN^NNCHN"), "PID", "3", "102"),
            ] {
                let answer = await Self.send(s, message)
                XCTAssertEqual(answer["MSA"]?[1].value, "AE", message)
                XCTAssertEqual(answer["ERR"]?[2].component(1), segment)
                XCTAssertEqual(answer["ERR"]?[2].component(3), field)
                XCTAssertEqual(answer["ERR"]?[3].component(1), code)
            }
            let after = try await s.store.resourceCounts()
            XCTAssertEqual(before, after, "AE stores nothing")
            // The refused messages are kept for diagnosis, sealed: no name or number in clear.
            let kept = try await s.store.records(kind: "hl7-rejected", now: Int64(Date().timeIntervalSince1970 * 1_000_000))
            XCTAssertEqual(kept.count, 7)
            for record in kept {
                XCTAssertFalse(record.content.contains("张") || record.content.contains("M123") || record.content.contains("110105"), record.content)
                let sealed = try XCTUnwrap(try JSONParser.parse(record.content)["sealed"]?.stringValue)
                let detail = try JSONParser.parse(try XCTUnwrap(s.service.pipeline.protection?.open(sealed, context: "hl7-rejected")))
                let raw = Data(base64Encoded: try XCTUnwrap(detail["message"]?.stringValue)) ?? Data()
                XCTAssertTrue(String(decoding: raw, as: UTF8.self).hasPrefix("MSH|"))
                XCTAssertNotNil(detail["error"]?.stringValue)
            }
            // Operators list them (no patient data) and open one (the message in clear, audited).
            let rejected = RejectedMessages(service: s.service)
            let all = try await rejected.list(sender: nil, count: 100)
            XCTAssertEqual(all["total"]?.numberText, "7")
            let listed = try await rejected.list(sender: "HIS^county-hospital", count: 3)
            XCTAssertEqual(listed["total"]?.numberText, "6", "the lab's message is another sender's")
            let summaries = listed["messages"]?.arrayValue ?? []
            XCTAssertEqual(summaries.count, 3, "at most _count")
            XCTAssertEqual(summaries.first?["code"]?.stringValue, "AE")
            XCTAssertFalse(String(decoding: JSONWriter.bytes(listed), as: UTF8.self).contains("张"), "the list shows no patient data")
            let none = try await rejected.list(sender: "OTHER^x", count: 10)
            XCTAssertEqual(none["messages"]?.arrayValue?.count, 0)
            let id = try XCTUnwrap(summaries.first?["id"]?.stringValue)
            let one = try await rejected.read(id)
            XCTAssertTrue(one["message"]?.stringValue?.hasPrefix("MSH|") == true)
            XCTAssertNotNil(one["error"]?.stringValue)
            let auditedBefore = try await s.store.auditEvents(after: 0, limit: 100_000).count
            _ = try await rejected.read(id)
            let auditedAfter = try await s.store.auditEvents(after: 0, limit: 100_000).count
            XCTAssertEqual(auditedAfter, auditedBefore + 1, "reading a rejected message is audited")
            do {
                _ = try await rejected.read("no-such-message")
                XCTFail("an unknown id was answered")
            } catch let error as FHIRError {
                XCTAssertEqual(error.category, .notFound)
            }
            // A facility's own system may not read them.
            let facility = RejectedMessages(service: s.service.acting(as: Principal(kind: .client, subject: "his", role: .facilitySystem,
                                                                                       facility: "county", scopes: SMARTScope.parseList("system/*.cruds"))))
            do {
                _ = try await facility.list(sender: nil, count: 10)
                XCTFail("a facility system listed rejected messages")
            } catch let error as FHIRError {
                XCTAssertEqual(error.category, .forbidden)
            }
        }
    }

    func test_messagesThatCannotBeTaken_areRefusedWithAR() async throws {
        try await withGateway { s in
            for (text, code) in [
                (Self.adt("A01", "X1").replacingOccurrences(of: "HIS|county-hospital", with: "HIS|elsewhere"), "204"),
                (Self.adt("A01", "X2").replacingOccurrences(of: "|2.4|", with: "|2.9|"), "203"),
                ([Self.msh("QRY^A19", "X3"), "QRD|1"].joined(separator: "\r"), "200"),
                ([Self.msh("ADT^A99", "X4"), Self.pid].joined(separator: "\r"), "201"),
                ("PID|1||X", "100"),
                (Self.adt("A01", "X5").replacingOccurrences(of: "MSH|^~\\&", with: "MSH|^~"), "100"),
            ] {
                let answer = await Self.send(s, text)
                XCTAssertEqual(answer["MSA"]?[1].value, "AR", text)
                XCTAssertEqual(answer["ERR"]?[3].component(1), code, text)
            }
            let counts = try await s.store.resourceCounts()
            XCTAssertEqual(counts.values.reduce(0, +), 0)
            XCTAssertEqual(s.gateway.counters.snapshot["HIS^elsewhere"]?.counts["AR"], 1)
        }
    }

    func test_ordersAppointmentsAndDocuments() async throws {
        try await withGateway { s in
            let pid = "PID|1||M123^^^county-hospital^MR||张^三"
            let order = await Self.send(s, [Self.msh("ORM^O01^ORM_O01", "O1"), pid,
                                            "ORC|NW|PL-9|FL-9||||||20261124101500|||D001^李^医生",
                                            "OBR|1|PL-9|FL-9|71020^Chest X-ray^C4|||||||||||||||||||||||^^^^^S"].joined(separator: "\r"))
            XCTAssertEqual(order["MSA"]?[1].value, "AA", ER7.serialize(order))
            let requests = try await Self.search(s, "ServiceRequest", "identifier=urn:huitong:order-placer:county|PL-9")
            XCTAssertEqual(requests.first?["status"]?.stringValue, "active")
            XCTAssertEqual(requests.first?["intent"]?.stringValue, "order")
            XCTAssertEqual(requests.first?["priority"]?.stringValue, "stat")
            XCTAssertEqual(requests.first?["requester"]?["display"]?.stringValue, "李医生")
            let cancel = await Self.send(s, [Self.msh("ORM^O01^ORM_O01", "O2"), pid, "ORC|CA|PL-9|FL-9", "OBR|1|PL-9|FL-9|71020^Chest X-ray^C4"].joined(separator: "\r"))
            XCTAssertEqual(cancel["MSA"]?[1].value, "AA")
            let cancelled = try await Self.search(s, "ServiceRequest", "identifier=urn:huitong:order-placer:county|PL-9")
            XCTAssertEqual(cancelled.map { $0["status"]?.stringValue }, ["revoked"], "the same order, cancelled")

            let booked = await Self.send(s, [Self.msh("SIU^S12^SIU_S12", "S1"), "SCH|AP-1||||||^复诊 follow-up||30|min|^^^20261201090000^20261201093000||||||||||||||Booked",
                                             pid, "AIP|1||D001^李^医生", "AIL|1||心内科门诊"].joined(separator: "\r"))
            XCTAssertEqual(booked["MSA"]?[1].value, "AA", ER7.serialize(booked))
            let appointment = try await Self.search(s, "Appointment", "identifier=urn:huitong:appointment:county|AP-1")
            XCTAssertEqual(appointment.first?["status"]?.stringValue, "booked")
            XCTAssertEqual(appointment.first?["start"]?.stringValue, "2026-12-01T09:00:00+08:00")
            XCTAssertEqual(appointment.first?["end"]?.stringValue, "2026-12-01T09:30:00+08:00")
            XCTAssertEqual(appointment.first?["participant"]?.arrayValue?.count, 3)
            _ = await Self.send(s, [Self.msh("SIU^S15^SIU_S12", "S2"), "SCH|AP-1||||||||||^^^20261201090000", pid].joined(separator: "\r"))
            let cancelledVisit = try await Self.search(s, "Appointment", "identifier=urn:huitong:appointment:county|AP-1")
            XCTAssertEqual(cancelledVisit.map { $0["status"]?.stringValue }, ["cancelled"])

            let pdf = Data("%PDF-1.4 出院小结 discharge summary".utf8).base64EncodedString()
            let doc = await Self.send(s, [Self.msh("MDM^T02^MDM_T02", "D1"), "EVN|T02", pid, "PV1|1|I",
                                          "TXA|1|DS|AP|20261124120000|||||D001^李^医生|||DOC-7|||||AU||||||出院小结",
                                          "OBX|1|ED|DS^Discharge summary||^application^pdf^Base64^\(pdf)||||||F"].joined(separator: "\r"))
            XCTAssertEqual(doc["MSA"]?[1].value, "AA", ER7.serialize(doc))
            let documents = try await Self.search(s, "DocumentReference", "identifier=urn:huitong:document:county|DOC-7")
            let document = try XCTUnwrap(documents.first)
            XCTAssertEqual(document["docStatus"]?.stringValue, "final")
            let attachment = document["content"]?[0]?["attachment"]
            XCTAssertEqual(attachment?["contentType"]?.stringValue, "application/pdf")
            let binaryRef = try XCTUnwrap(attachment?["url"]?.stringValue)
            XCTAssertTrue(binaryRef.hasPrefix("Binary/"), binaryRef)
            let binary = try await s.service.read("Binary", String(binaryRef.dropFirst(7)))
            let binaryJSON = try JSONParser.parse(binary.content!.readableBytesView)
            XCTAssertEqual(binaryJSON["data"]?.stringValue, pdf, "the document's bytes, as sent")
            XCTAssertEqual(binaryJSON["contentType"]?.stringValue, "application/pdf")
            let badDoc = await Self.send(s, [Self.msh("MDM^T02^MDM_T02", "D2"), pid, "TXA|1|DS|AP|20261124120000||||||||DOC-8",
                                             "OBX|1|ED|DS||^application^pdf^Base64^***||||||F"].joined(separator: "\r"))
            XCTAssertEqual(badDoc["MSA"]?[1].value, "AE")
            XCTAssertEqual(badDoc["ERR"]?[2].component(1), "OBX")
        }
    }

    func test_mergeLinksTheTwoRegistrations() async throws {
        try await withGateway { s in
            let keep = "PID|1||K-1^^^county-hospital^MR||赵^六||19700101|M"
            let gone = "PID|1||K-2^^^county-hospital^MR||赵^陆||19700101|M"
            for (pid, control) in [(keep, "G1"), (gone, "G2")] {
                let answer = await Self.send(s, Self.adt("A04", control, pid: pid, pv1: "PV1|1|O"))
                XCTAssertEqual(answer["MSA"]?[1].value, "AA")
            }
            let unknown = await Self.send(s, [Self.msh("ADT^A40^ADT_A39", "G3"), "EVN|A40", keep, "MRG|K-404^^^county-hospital^MR"].joined(separator: "\r"))
            XCTAssertEqual(unknown["MSA"]?[1].value, "AE", ER7.serialize(unknown))
            XCTAssertEqual(unknown["ERR"]?[3].component(1), "204")
            let merged = await Self.send(s, [Self.msh("ADT^A40^ADT_A39", "G4"), "EVN|A40", keep, "MRG|K-2^^^county-hospital^MR"].joined(separator: "\r"))
            XCTAssertEqual(merged["MSA"]?[1].value, "AA", ER7.serialize(merged))
            let survivor = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|K-1")
            let old = try await Self.search(s, "Patient", "identifier=\(Self.mrn)|K-2")
            let survivorID = try XCTUnwrap(survivor.first?["id"]?.stringValue), oldID = try XCTUnwrap(old.first?["id"]?.stringValue)
            XCTAssertEqual(survivor.first?["link"]?[0]?["other"]?["reference"]?.stringValue, "Patient/" + oldID)
            XCTAssertEqual(survivor.first?["link"]?[0]?["type"]?.stringValue, "replaces")
            XCTAssertEqual(old.first?["active"], .bool(false))
            XCTAssertEqual(old.first?["link"]?[0]?["other"]?["reference"]?.stringValue, "Patient/" + survivorID)
            XCTAssertEqual(old.first?["link"]?[0]?["type"]?.stringValue, "replaced-by")
            XCTAssertEqual(old.first?["name"]?[0]?["given"]?[0]?.stringValue, "陆", "the merged registration keeps its content")
        }
    }

    func test_overMLLP_framesAreAnsweredInOrder_andBrokenFramesGetAR() async throws {
        try await withGateway { s in
            let server = try await MLLPServer.start(host: "127.0.0.1", port: 0, maxMessageBytes: 64 * 1024) { frame, peer in
                await s.gateway.handle(frame, peer: peer)
            }
            defer { Task { try? await server.close() } }
            // Three messages in one write (pipelined), answered in the order sent.
            let three = ["P1", "P2", "P3"].flatMap { MLLP.frame(Array(Self.adt("A04", $0).utf8)) }
            let answers = try await MLLPTestClient.exchange(port: server.port, [three], expecting: 3)
            XCTAssertEqual(answers.map { (try? ER7.parse(String(decoding: $0, as: UTF8.self)))?["MSA"]?[2].value }, ["P1", "P2", "P3"])
            // Too large: AR from what its MSH says; a frame cut off by a new start block: AR; the next one: AA.
            let huge = MLLP.frame(Array((Self.adt("A04", "BIG") + "\rNTE|1||" + String(repeating: "x", count: 100_000)).utf8))
            let cut = [MLLP.start] + Array(Self.adt("A04", "CUT").utf8.prefix(Self.msh("ADT^A04^ADT_A04", "CUT").utf8.count + 12))
            let fine = MLLP.frame(Array(Self.adt("A04", "OK").utf8))
            let more = try await MLLPTestClient.exchange(port: server.port, [huge, cut, fine], expecting: 3)
            let parsed = more.map { try? ER7.parse(String(decoding: $0, as: UTF8.self)) }
            XCTAssertEqual(parsed.map { $0?["MSA"]?[1].value }, ["AR", "AR", "AA"])
            XCTAssertEqual(parsed.map { $0?["MSA"]?[2].value }, ["BIG", "CUT", "OK"])
        }
    }
}

/// A plain MLLP client: writes the given chunks, reads `expecting` framed answers.
enum MLLPTestClient {
    static func exchange(port: Int, _ chunks: [[UInt8]], expecting: Int) async throws -> [[UInt8]] {
        let collector = Collector(expecting: expecting)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .connect(host: "127.0.0.1", port: port).get()
        for chunk in chunks {
            try await channel.writeAndFlush(ByteBuffer(bytes: chunk))
        }
        let frames = try await collector.done.futureResult.get()
        try await channel.close()
        return frames
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let expecting: Int
        var bytes: [UInt8] = []
        let done = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: [[UInt8]].self)

        init(expecting: Int) { self.expecting = expecting }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            bytes += unwrapInboundIn(data).readableBytesView
            var frames: [[UInt8]] = []
            var rest = bytes[...]
            while let s = rest.firstIndex(of: MLLP.start), let e = rest[s...].firstIndex(of: 0x1C) {
                frames.append(Array(rest[(s + 1)..<e]))
                rest = rest[(e + 1)...]
            }
            if frames.count >= expecting { done.succeed(frames) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.fail(ChannelError.alreadyClosed)
        }
    }
}
