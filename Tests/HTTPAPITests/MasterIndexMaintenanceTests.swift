import Access
import FHIRModel
import Foundation
import HTTPTypes
import Identity
import Platform
import Store
import XCTest

final class MasterIndexMaintenanceTests: XCTestCase {
    func test_newbornsUnderPlaceholderNames_linkThroughTheMothersID() async throws {
        try await TestServer.run { server, _ in
            let mother = residentID("1990-03-03", 42)
            func newborn(_ family: String, _ given: String, _ mrn: String, _ facility: String, mother: String, gender: String = "male") -> String {
                #"{"resourceType":"Patient","identifier":[{"system":"urn:huitong:mrn:\#(facility)","value":"\#(mrn)"}],"name":[{"family":"\#(family)","given":["\#(given)"]}],"gender":"\#(gender)","birthDate":"2026-11-20","contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}],"extension":[{"url":"https://huitong.health/fhir/StructureDefinition/contact-identifier","valueIdentifier":{"system":"urn:oid:2.16.156.10011.1.3","value":"\#(mother)"}}]}]}"#
            }
            // The maternity ward and the children's hospital both registered 王某之子; the names are placeholders.
            let a = try await createPatient(server, newborn("王", "某之子", "M1", "maternity", mother: mother))
            let b = try await createPatient(server, newborn("王", "某之子", "C9", "childrens", mother: mother))
            let other = try await createPatient(server, newborn("王", "某之子", "M2", "maternity", mother: residentID("1992-07-07", 8)))
            let pa = try await personID(server, of: a), pb = try await personID(server, of: b), po = try await personID(server, of: other)
            XCTAssertEqual(pa, pb, "the same mother and birth date")
            XCTAssertNotEqual(pa, po, "another mother's baby, same placeholder name and birth date")
        }
    }

    func test_trainAndRebuild_keepManualLinks_andRestoreAutomaticOnes() async throws {
        try await TestServer.run { server, store in
            var ids: [String] = []
            for i in 0..<30 {
                let birth = String(format: "19%02d-0%d-1%d", 50 + i, 1 + i % 9, i % 10)
                let family = ["赵", "钱", "孙", "李", "周", "吴"][i % 6]
                let given = ["一", "二", "三", "四", "五"][i % 5] + String(i)
                let id = residentID(birth, 100 + i)
                ids.append(try await createPatient(server, registration(family: family, given: given, birth: birth, id: id, mrn: "a\(i)", facility: "a")))
                _ = try await createPatient(server, registration(family: family, given: given, birth: birth, id: id, mrn: "b\(i)", facility: "b"))
            }
            // A reviewer links a stranger into resident 0's record on purpose.
            let stranger = try await createPatient(server, registration(family: "欧阳", given: "娜娜", birth: "2000-01-01", gender: "female", mrn: "z", facility: "c"))
            let person0 = try await personID(server, of: ids[0])
            let linked = try await server.request(.post, "/fhir/$empi-link", decision([("patient", "Patient/\(stranger)"), ("person", "Person/\(person0)")]))
            XCTAssertEqual(linked.status, 200, linked.bodyText)
            // Train on what is stored, then match everything again with the trained rules.
            let (rules, report) = try await MatchTraining.train(store: store, protection: server.identifiers, start: .defaults, randomPairs: 20_000)
            XCTAssertEqual(report.patients, 61)
            XCTAssertGreaterThan(report.candidatePairs, 29)
            let pipeline = IngestPipeline(protection: server.identifiers)
            let rebuilt = try await MasterIndexRebuild(service: FHIRService(store: store, pipeline: pipeline, matching: rules, principal: .platform)).run()
            XCTAssertEqual(rebuilt.patients, 61)
            XCTAssertEqual(rebuilt.outcomes["MANUAL"], 1)
            XCTAssertEqual(rebuilt.outcomes["MATCH"], 30, "every second registration found its resident again")
            let persons = try await server.request(.get, "/fhir/Person?_count=100").json["entry"]?.arrayValue ?? []
            let active = persons.filter { $0["resource"]?["active"] == .bool(true) }
            XCTAssertEqual(active.count, 30, "30 residents, each with both registrations (and the stranger, by decision)")
            let person = try await masterPerson(server, of: stranger)
            XCTAssertEqual(linkedPatients(person).count, 3)
            XCTAssertTrue(linkedPatients(person).contains("Patient/\(ids[0])"))
            XCTAssertEqual(person?["link"]?.arrayValue?.first { $0["target"]?["reference"]?.stringValue == "Patient/\(stranger)" }?["assurance"]?.stringValue,
                           "level4")
        }
    }
}
