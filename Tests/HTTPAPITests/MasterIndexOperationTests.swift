import FHIRModel
import Foundation
import HTTPTypes
import Store
import XCTest

/// A Parameters body for a decision operation.
func decision(_ pairs: [(String, String)], reason: String = "checked the ID card at the desk", actor: String = "Practitioner/reviewer-1") -> String {
    let params = pairs.map { #"{"name":"\#($0.0)","valueReference":{"reference":"\#($0.1)"}}"# }
        + [#"{"name":"reason","valueString":"\#(reason)"}"#, #"{"name":"actor","valueString":"\#(actor)"}"#]
    return #"{"resourceType":"Parameters","parameter":[\#(params.joined(separator: ","))]}"#
}

func personID(_ server: TestServer, of patient: String) async throws -> String {
    try await masterPerson(server, of: patient)?["id"]?.stringValue ?? ""
}

final class MasterIndexOperationTests: XCTestCase {
    func test_match_pix_andPersonEverything() async throws {
        try await TestServer.run { server, _ in
            let id = residentID("1979-12-01", 31)
            let a = try await createPatient(server, registration(family: "黄", given: "丽", birth: "1979-12-01", id: id, gender: "female", mrn: "A", facility: "county"))
            let b = try await createPatient(server, registration(family: "黄", given: "丽", birth: "1979-12-01", id: id, gender: "female", mrn: "B", facility: "city"))
            _ = try await createPatient(server, registration(family: "黄", given: "磊", birth: "1979-12-01", gender: "male", mrn: "C", facility: "city"))
            try await putResource(server, "Observation", "bp", #"{"status":"final","code":{"text":"血压"},"subject":{"reference":"Patient/\#(a)"}}"#)
            try await putResource(server, "Observation", "glu", #"{"status":"final","code":{"text":"血糖"},"subject":{"reference":"Patient/\#(b)"}}"#)
            // $match: the two registrations of 黄丽 are certain; 黄磊 (another person) is not offered as certain.
            let probe = #"{"resourceType":"Parameters","parameter":[{"name":"resource","resource":\#(registration(family: "黄", given: "丽", birth: "1979-12-01", id: id, gender: "female", mrn: "Z", facility: "clinic"))},{"name":"onlyCertainMatches","valueBoolean":true}]}"#
            let match = try await server.request(.post, "/fhir/Patient/$match", probe)
            XCTAssertEqual(match.status, 200, match.bodyText)
            let entries = match.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(Set(entries.compactMap { $0["resource"]?["id"]?.stringValue }), [a, b])
            XCTAssertEqual(entries.first?["search"]?["extension"]?.arrayValue?.first?["valueCode"]?.stringValue, "certain")
            XCTAssertGreaterThan(Double(entries.first?["search"]?["score"]?.numberText ?? "0") ?? 0, 0.99)
            let bad = try await server.request(.post, "/fhir/Patient/$match", #"{"resourceType":"Parameters","parameter":[]}"#)
            XCTAssertEqual(bad.status, 400)
            // PIXm: the county MRN finds the city MRN and the resident ID.
            let pix = try await server.request(.get, "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:huitong:mrn:county|A")
            XCTAssertEqual(pix.status, 200, pix.bodyText)
            let identifiers = Set((pix.json["parameter"]?.arrayValue ?? []).compactMap { p -> String? in
                guard p["name"]?.stringValue == "targetIdentifier" else { return nil }
                return (p["valueIdentifier"]?["system"]?.stringValue ?? "") + "|" + (p["valueIdentifier"]?["value"]?.stringValue ?? "")
            })
            XCTAssertEqual(identifiers, ["urn:huitong:mrn:county|A", "urn:huitong:mrn:city|B", "urn:oid:2.16.156.10011.1.3|\(id)"])
            let only = try await server.request(.get, "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:huitong:mrn:county|A&targetSystem=urn:huitong:mrn:city")
            XCTAssertEqual(only.json["parameter"]?.arrayValue?.count, 1)
            let unknown = try await server.request(.get, "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:huitong:mrn:county|nobody")
            XCTAssertEqual(unknown.status, 404)
            // All records of this resident, across both facilities.
            let person = try await personID(server, of: a)
            let everything = try await server.request(.get, "/fhir/Person/\(person)/$everything")
            XCTAssertEqual(everything.status, 200, everything.bodyText)
            let keys = Set((everything.json["entry"]?.arrayValue ?? []).compactMap { e -> String? in
                guard let r = e["resource"], let t = r["resourceType"]?.stringValue, let i = r["id"]?.stringValue else { return nil }
                return "\(t)/\(i)"
            })
            XCTAssertTrue(keys.isSuperset(of: ["Patient/\(a)", "Patient/\(b)", "Observation/bp", "Observation/glu", "Person/\(person)"]), "\(keys)")
        }
    }

    func test_manualLink_isNeverUndoneByMatching_andSettlesTheReviewItem() async throws {
        try await TestServer.run { server, _ in
            let a = try await createPatient(server, registration(family: "周", given: "芳", birth: "1958-04-04", gender: "female", mrn: "1", facility: "x", city: "德阳"))
            let b = try await createPatient(server, registration(family: "周", given: "芳", birth: "1958-04-04", gender: "female", mrn: "2", facility: "y", city: "广元"))
            let pa = try await personID(server, of: a)
            let pb = try await personID(server, of: b)
            XCTAssertNotEqual(pa, pb, "possible match only")
            let linked = try await server.request(.post, "/fhir/$empi-link", decision([("patient", "Patient/\(b)"), ("person", "Person/\(pa)")]))
            XCTAssertEqual(linked.status, 200, linked.bodyText)
            let person = try await masterPerson(server, of: b)
            XCTAssertEqual(person?["id"]?.stringValue, pa)
            XCTAssertEqual(person?["link"]?.arrayValue?.first { $0["target"]?["reference"]?.stringValue == "Patient/\(b)" }?["assurance"]?.stringValue, "level4")
            // The review item is settled, and the decision is on record with who and why.
            let open = try await server.request(.get, "/fhir/Task?code=https://huitong.health/fhir/CodeSystem/empi|possible-match&status=requested")
            XCTAssertEqual(open.json["entry"]?.arrayValue?.count ?? 0, 0, open.bodyText)
            let decisions = try await server.request(.get, "/fhir/Task?code=https://huitong.health/fhir/CodeSystem/empi|decision-link")
            let record = decisions.json["entry"]?.arrayValue?.first?["resource"]
            XCTAssertEqual(record?["requester"]?["display"]?.stringValue, "Practitioner/reviewer-1")
            XCTAssertEqual(record?["reasonCode"]?["text"]?.stringValue, "checked the ID card at the desk")
            // The facility then changes b so that it no longer resembles a: the MANUAL link stands.
            var changed = try JSONParser.parse(registration(family: "吴", given: "刚", birth: "1990-01-01", mrn: "2", facility: "y"))
            if case .object(var o) = changed { o["id"] = .string(b); changed = .object(o) }
            let put = try await server.request(.put, "/fhir/Patient/\(b)", String(decoding: JSONWriter.bytes(changed), as: UTF8.self))
            XCTAssertEqual(put.status, 200)
            let p1 = try await personID(server, of: b)
            XCTAssertEqual(p1, pa)
            // A decision needs a reason.
            let noReason = try await server.request(.post, "/fhir/$empi-link", decision([("patient", "Patient/\(b)"), ("person", "Person/\(pa)")], reason: ""))
            XCTAssertEqual(noReason.status, 400)
        }
    }

    func test_notMatch_keepsMatchingAway_andUnlinkSeparates() async throws {
        try await TestServer.run { server, _ in
            let id = residentID("1966-06-06", 66)
            let a = try await createPatient(server, registration(family: "郑", given: "军", birth: "1966-06-06", id: id, mrn: "1", facility: "x", phone: "13912345678"))
            let b = try await createPatient(server, registration(family: "郑", given: "军", birth: "1966-06-06", id: id, mrn: "2", facility: "y"))
            let person = try await personID(server, of: a)
            let p2 = try await personID(server, of: b)
            XCTAssertEqual(p2, person)
            // A reviewer finds b is a namesake who borrowed the ID number: not this person.
            let r = try await server.request(.post, "/fhir/$empi-not-match", decision([("patient", "Patient/\(b)"), ("person", "Person/\(person)")]))
            XCTAssertEqual(r.status, 200, r.bodyText)
            let own = try await personID(server, of: b)
            XCTAssertNotEqual(own, person)
            // Matching b again (an update with the same data) does not bring it back.
            let current = try await server.request(.get, "/fhir/Patient/\(b)")
            _ = try await server.request(.put, "/fhir/Patient/\(b)", current.bodyText)
            let p3 = try await personID(server, of: b)
            XCTAssertNotEqual(p3, person)
            // c is a again (same phone too): it joins a's Person, not b's, although b looks alike.
            let c = try await createPatient(server, registration(family: "郑", given: "军", birth: "1966-06-06", id: id, mrn: "3", facility: "z", phone: "13912345678"))
            let p4 = try await personID(server, of: c)
            XCTAssertEqual(p4, person)
            // Unlink: c leaves a's Person for one of its own.
            let u = try await server.request(.post, "/fhir/$empi-unlink", decision([("patient", "Patient/\(c)"), ("person", "Person/\(person)")]))
            XCTAssertEqual(u.status, 200, u.bodyText)
            let p5 = try await personID(server, of: c)
            XCTAssertNotEqual(p5, person)
            let p6 = try await personID(server, of: a)
            XCTAssertEqual(p6, person)
            let wrong = try await server.request(.post, "/fhir/$empi-unlink", decision([("patient", "Patient/\(c)"), ("person", "Person/\(person)")]))
            XCTAssertEqual(wrong.status, 409)
        }
    }

    func test_mergeAndUnmerge_roundTrip() async throws {
        try await TestServer.run { server, _ in
            let a = try await createPatient(server, registration(family: "冯", given: "涛", birth: "1980-02-02", id: residentID("1980-02-02", 1), mrn: "1", facility: "x"))
            let b = try await createPatient(server, registration(family: "冯", given: "涛", birth: "1980-02-02", id: residentID("1980-02-02", 1), mrn: "2", facility: "y"))
            let c = try await createPatient(server, registration(family: "冯", given: "韬", birth: "1980-02-20", mrn: "3", facility: "z"))
            let into = try await personID(server, of: a), from = try await personID(server, of: c)
            XCTAssertNotEqual(into, from)
            func snapshot(_ id: String) async throws -> [String: String] {
                let p = try await server.request(.get, "/fhir/Person/\(id)").json
                var links: [String: String] = [:]
                for l in p["link"]?.arrayValue ?? [] { links[l["target"]?["reference"]?.stringValue ?? ""] = l["assurance"]?.stringValue }
                links["active"] = p["active"]?.boolValue == true ? "true" : "false"
                return links
            }
            let beforeInto = try await snapshot(into), beforeFrom = try await snapshot(from)
            let merged = try await server.request(.post, "/fhir/$empi-merge", decision([("from", "Person/\(from)"), ("into", "Person/\(into)")]))
            XCTAssertEqual(merged.status, 200, merged.bodyText)
            let p7 = try await personID(server, of: c)
            XCTAssertEqual(p7, into)
            let retired = try await server.request(.get, "/fhir/Person/\(from)").json
            XCTAssertEqual(retired["active"], .bool(false))
            XCTAssertEqual(retired["link"]?.arrayValue?.first?["target"]?["reference"]?.stringValue, "Person/\(into)")
            let unmerged = try await server.request(.post, "/fhir/$empi-unmerge", decision([("from", "Person/\(from)"), ("into", "Person/\(into)")]))
            XCTAssertEqual(unmerged.status, 200, unmerged.bodyText)
            let afterInto = try await snapshot(into), afterFrom = try await snapshot(from)
            XCTAssertEqual(afterInto, beforeInto)
            XCTAssertEqual(afterFrom, beforeFrom)
            let p8 = try await personID(server, of: b)
            XCTAssertEqual(p8, into)
        }
    }
}
