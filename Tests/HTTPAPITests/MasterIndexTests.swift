import FHIRModel
import Foundation
import HTTPTypes
import Identity
import Store
import XCTest

/// A valid resident ID number (GB 11643 check character) for a birth date and sequence.
func residentID(_ birth: String, _ sequence: Int, region: String = "510104") -> String {
    let body = region + birth.replacingOccurrences(of: "-", with: "") + String(format: "%03d", sequence)
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    let sum = zip(body, weights).reduce(0) { $0 + Int(String($1.0))! * $1.1 }
    return body + String(Array("10X98765432")[sum % 11])
}

/// A facility's registration of a resident.
func registration(family: String, given: String, birth: String, id: String? = nil, gender: String = "male",
                  mrn: String, facility: String, phone: String? = nil, city: String? = nil) -> String {
    var identifiers = [#"{"system":"urn:huitong:mrn:\#(facility)","value":"\#(mrn)"}"#]
    if let id { identifiers.append(#"{"system":"urn:oid:2.16.156.10011.1.3","value":"\#(id)"}"#) }
    var members = [#""resourceType":"Patient""#, #""identifier":[\#(identifiers.joined(separator: ","))]"#,
                   #""name":[{"family":"\#(family)","given":["\#(given)"]}]"#, #""gender":"\#(gender)""#, #""birthDate":"\#(birth)""#]
    if let phone { members.append(#""telecom":[{"system":"phone","value":"\#(phone)"}]"#) }
    if let city { members.append(#""address":[{"city":"\#(city)"}]"#) }
    return "{" + members.joined(separator: ",") + "}"
}

/// The master Person of a Patient, found the standard way (`Person?link=Patient/id`).
func masterPerson(_ server: TestServer, of patient: String) async throws -> JSON? {
    let r = try await server.request(.get, "/fhir/Person?link=Patient/\(patient)")
    XCTAssertEqual(r.status, 200, r.bodyText)
    let entries = r.json["entry"]?.arrayValue ?? []
    XCTAssertLessThanOrEqual(entries.count, 1, "a Patient has one master Person")
    return entries.first?["resource"]
}

func createPatient(_ server: TestServer, _ body: String) async throws -> String {
    let r = try await server.request(.post, "/fhir/Patient", body)
    XCTAssertEqual(r.status, 201, r.bodyText)
    return r.id ?? ""
}

func linkedPatients(_ person: JSON?) -> Set<String> {
    Set((person?["link"]?.arrayValue ?? []).compactMap { $0["target"]?["reference"]?.stringValue })
}

final class MasterIndexTests: XCTestCase {
    func test_sameResidentAtTwoFacilities_linksToOnePerson_differentResidentsDoNot() async throws {
        try await TestServer.run { server, _ in
            let id = residentID("1985-06-15", 123)
            let a = try await createPatient(server, registration(family: "张", given: "伟", birth: "1985-06-15", id: id, mrn: "A1", facility: "county"))
            // The city hospital wrote a homophone (章) and has the same ID number.
            let b = try await createPatient(server, registration(family: "章", given: "伟", birth: "1985-06-15", id: id, mrn: "B7", facility: "city"))
            let c = try await createPatient(server, registration(family: "李", given: "娜", birth: "1990-01-02", id: residentID("1990-01-02", 456),
                                                          gender: "female", mrn: "A2", facility: "county"))
            let pa = try await masterPerson(server, of: a), pb = try await masterPerson(server, of: b), pc = try await masterPerson(server, of: c)
            XCTAssertEqual(pa?["id"], pb?["id"])
            XCTAssertNotEqual(pa?["id"], pc?["id"])
            XCTAssertEqual(linkedPatients(pa), ["Patient/\(a)", "Patient/\(b)"])
            XCTAssertEqual(pa?["link"]?.arrayValue?.compactMap { $0["assurance"]?.stringValue }, ["level3", "level3"], "AUTO links")
            // The Person carries every facility's identifiers.
            let systems = Set((pa?["identifier"]?.arrayValue ?? []).compactMap { $0["system"]?.stringValue })
            XCTAssertEqual(systems, ["urn:huitong:mrn:county", "urn:huitong:mrn:city", "urn:oid:2.16.156.10011.1.3"])
        }
    }

    func test_sameNameAndBirthDateWithoutID_isPossibleMatch_withReviewItem() async throws {
        try await TestServer.run { server, _ in
            let a = try await createPatient(server, registration(family: "王", given: "秀英", birth: "1962-03-08", gender: "female", mrn: "1",
                                                          facility: "x", city: "成都"))
            let b = try await createPatient(server, registration(family: "王", given: "秀英", birth: "1962-03-08", gender: "female", mrn: "9",
                                                          facility: "y", city: "绵阳"))
            let pa = try await masterPerson(server, of: a), pb = try await masterPerson(server, of: b)
            XCTAssertNotEqual(pa?["id"], pb?["id"], "a common name and a birth date alone are not enough to link")
            let review = try await server.request(.get, "/fhir/Task?code=https://huitong.health/fhir/CodeSystem/empi|possible-match&status=requested")
            let tasks = review.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(tasks.count, 1, review.bodyText)
            XCTAssertEqual(tasks.first?["resource"]?["focus"]?["reference"]?.stringValue, "Patient/\(b)")
            XCTAssertEqual(tasks.first?["resource"]?["input"]?.arrayValue?.first?["valueReference"]?["reference"]?.stringValue,
                           "Person/\(pa?["id"]?.stringValue ?? "")")
        }
    }

    func test_updateThatChangesIdentity_movesTheLink_andDeleteLeavesThePerson() async throws {
        try await TestServer.run { server, _ in
            let idA = residentID("1970-11-30", 11), idB = residentID("1988-02-29", 22)
            let a = try await createPatient(server, registration(family: "刘", given: "强", birth: "1970-11-30", id: idA, mrn: "1", facility: "x"))
            let b = try await createPatient(server, registration(family: "陈", given: "静", birth: "1988-02-29", id: idB, gender: "female", mrn: "2", facility: "x"))
            let c = try await createPatient(server, registration(family: "刘", given: "强", birth: "1970-11-30", id: idA, mrn: "3", facility: "y"))
            var pa = try await masterPerson(server, of: a)
            XCTAssertEqual(linkedPatients(pa), ["Patient/\(a)", "Patient/\(c)"])
            // Facility y corrects its record: it was 陈静 all along.
            var corrected = try JSONParser.parse(registration(family: "陈", given: "静", birth: "1988-02-29", id: idB, gender: "female", mrn: "3", facility: "y"))
            if case .object(var o) = corrected { o["id"] = .string(c); corrected = .object(o) }
            let put = try await server.request(.put, "/fhir/Patient/\(c)", String(decoding: JSONWriter.bytes(corrected), as: UTF8.self))
            XCTAssertEqual(put.status, 200, put.bodyText)
            pa = try await masterPerson(server, of: a)
            let pb = try await masterPerson(server, of: b)
            XCTAssertEqual(linkedPatients(pa), ["Patient/\(a)"])
            XCTAssertEqual(linkedPatients(pb), ["Patient/\(b)", "Patient/\(c)"])
            // Deleting a source record removes its link; a Person left with none is inactive.
            _ = try await server.request(.delete, "/fhir/Patient/\(a)")
            let emptied = try await server.request(.get, "/fhir/Person/\(pa?["id"]?.stringValue ?? "")")
            XCTAssertEqual(emptied.json["active"], .bool(false))
            XCTAssertEqual(linkedPatients(emptied.json), [])
        }
    }

    /// Matching keeps candidates it has read (by version): one corrected since is read again, so
    /// the next registration is compared with what the record says now.
    func test_aCandidateCorrectedAfterItWasCompared_isComparedAsItIsNow() async throws {
        try await TestServer.run { server, _ in
            let idX = residentID("1962-03-08", 31), idY = residentID("1988-02-29", 42)
            let a = try await createPatient(server, registration(family: "王", given: "秀英", birth: "1962-03-08", id: idX, gender: "female",
                                                          mrn: "1", facility: "x"))
            // b is the same resident: a is read (and kept) as its candidate.
            let b = try await createPatient(server, registration(family: "王", given: "秀英", birth: "1962-03-08", id: idX, gender: "female",
                                                          mrn: "8", facility: "y"))
            let first = try await masterPerson(server, of: b)
            XCTAssertEqual(linkedPatients(first), ["Patient/\(a)", "Patient/\(b)"])
            // Facility x corrects a: it is 陈静, another resident.
            var corrected = try JSONParser.parse(registration(family: "陈", given: "静", birth: "1988-02-29", id: idY, gender: "female",
                                                              mrn: "1", facility: "x"))
            if case .object(var o) = corrected { o["id"] = .string(a); corrected = .object(o) }
            let put = try await server.request(.put, "/fhir/Patient/\(a)", String(decoding: JSONWriter.bytes(corrected), as: UTF8.self))
            XCTAssertEqual(put.status, 200, put.bodyText)
            // 陈静 registers elsewhere: compared with a as corrected, she is linked to a's Person.
            let c = try await createPatient(server, registration(family: "陈", given: "静", birth: "1988-02-29", id: idY, gender: "female",
                                                          mrn: "5", facility: "z"))
            let pa = try await masterPerson(server, of: a), pc = try await masterPerson(server, of: c)
            XCTAssertEqual(pa?["id"], pc?["id"])
            XCTAssertEqual(linkedPatients(pc), ["Patient/\(a)", "Patient/\(c)"])
            let pb = try await masterPerson(server, of: b)
            XCTAssertEqual(linkedPatients(pb), ["Patient/\(b)"])
        }
    }

    func test_oneTransactionWithTheSameResidentTwice_makesOnePerson() async throws {
        try await TestServer.run { server, store in
            let id = residentID("2001-09-09", 77)
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":\(registration(family: "赵", given: "敏", birth: "2001-09-09", id: id, gender: "female", mrn: "1", facility: "x")),
               "request":{"method":"POST","url":"Patient"}},
              {"resource":\(registration(family: "赵", given: "敏", birth: "2001-09-09", id: id, gender: "female", mrn: "5", facility: "y")),
               "request":{"method":"POST","url":"Patient"}}]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200, r.bodyText)
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 2)
            XCTAssertEqual(counts["Person"], 1)
        }
    }

    func test_blockingKeysTooCommonToUse_areSkipped_andRegistrationsStillCommit() async throws {
        var rules = MatchRules.defaults
        rules.maxCandidatesPerKey = 2
        try await TestServer.run(matching: rules) { server, store in
            // Six different 王s born in 1980: "family name + birth year" soon names too many to block on.
            for i in 0..<6 {
                _ = try await createPatient(server, registration(family: "王", given: "字\(i)", birth: "1980-0\(i + 1)-1\(i)",
                                                                 id: residentID("1980-0\(i + 1)-1\(i)", i), mrn: "\(i)", facility: "x"))
            }
            // The same resident again: found through the ID number, not the over-full key.
            let again = try await createPatient(server, registration(family: "王", given: "字5", birth: "1980-06-15",
                                                                     id: residentID("1980-06-15", 5), mrn: "99", facility: "y"))
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 7)
            XCTAssertEqual(counts["Person"], 6)
            let person = try await masterPerson(server, of: again)
            XCTAssertEqual(linkedPatients(person).count, 2)
        }
    }

    func test_concurrentRegistrationsOfOneResident_makeOnePerson() async throws {
        try await TestServer.run { server, store in
            let id = residentID("1995-05-05", 5)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<12 {
                    group.addTask {
                        let r = try await server.request(.post, "/fhir/Patient",
                                                         registration(family: "孙", given: "磊", birth: "1995-05-05", id: id, mrn: "\(i)", facility: "f\(i)"))
                        XCTAssertEqual(r.status, 201, r.bodyText)
                    }
                }
                try await group.waitForAll()
            }
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 12)
            XCTAssertEqual(counts["Person"], 1, "every registration found the one Person, none made a second")
        }
    }

    func test_concurrentRegistrations_ofDifferentResidents_andOfOnePatientTwice_eachEndWithOnePerson() async throws {
        try await TestServer.run { server, store in
            // Different residents (nothing in common but the family name) plan side by side.
            let surnames = ["赵", "钱", "孙", "李", "周", "吴", "郑", "王"]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<24 {
                    group.addTask {
                        let birth = "19\(60 + i)-0\(i % 9 + 1)-1\(i % 10)"
                        let r = try await server.request(.post, "/fhir/Patient",
                                                         registration(family: surnames[i % 8], given: "名\(i)", birth: birth,
                                                                      id: residentID(birth, i), mrn: "M\(i)", facility: "f\(i % 3)"))
                        XCTAssertEqual(r.status, 201, r.bodyText)
                    }
                }
                // The same Patient written by client-chosen id from several requests at once, each
                // time with demographics sharing no blocking key with the others.
                for j in 0..<6 {
                    group.addTask {
                        let birth = "198\(j)-0\(j + 1)-2\(j)"
                        let body = registration(family: ["冯", "陈", "褚", "卫", "蒋", "沈"][j], given: "敏\(j)", birth: birth,
                                                id: residentID(birth, 900 + j), mrn: "Z\(j)", facility: "fz")
                        let withID = "{\"id\":\"same-one\"," + body.dropFirst()
                        let r = try await server.request(.put, "/fhir/Patient/same-one", withID)
                        XCTAssertTrue([200, 201].contains(r.status), r.bodyText)
                    }
                }
                try await group.waitForAll()
            }
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 25)
            XCTAssertEqual(counts["Person"], 25, "one Person per resident")
            let person = try await masterPerson(server, of: "same-one")
            XCTAssertEqual(linkedPatients(person), ["Patient/same-one"])
        }
    }
}
