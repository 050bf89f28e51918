@testable import Access
import FHIRModel
import Foundation
import HTTPTypes
import Identity
import NIOCore
import Store
import XCTest

/// Resident ID and phone numbers at rest (issue 6 §5): encrypted in stored resources, their
/// history and the index; found by exact value; shown in clear to the writing facility, the
/// resident and administrators, masked to everyone else.
final class IdentifierProtectionTests: XCTestCase {
    static let id = residentID("1990-03-07", 123, region: "110101")
    static let phone = "13800138000"

    static func patient(id: String = IdentifierProtectionTests.id, phone: String = IdentifierProtectionTests.phone) -> String {
        #"{"resourceType":"Patient","identifier":[{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"NNCHN"}]},"system":"urn:oid:2.16.156.10011.1.3","value":"\#(id)"},{"system":"urn:huitong:mrn:a","value":"MRN-7"}],"name":[{"family":"吴","given":["敏"]}],"gender":"female","birthDate":"1990-03-07","telecom":[{"system":"phone","value":"\#(phone)","use":"mobile"},{"system":"email","value":"wu.min@example.cn"}]}"#
    }

    func test_storedRecordsAndIndexHoldNoNumbers_yetExactSearchFindsThem() async throws {
        try await TestServer.run { server, store in
            let created = try await server.request(.post, "/fhir/Patient", Self.patient())
            XCTAssertEqual(created.status, 201, created.bodyText)
            let pid = try XCTUnwrap(created.id)
            let updated = try await server.request(.put, "/fhir/Patient/\(pid)",
                                                   Self.patient().replacingOccurrences(of: "{\"resourceType\":\"Patient\",", with: "{\"resourceType\":\"Patient\",\"id\":\"\(pid)\","))
            XCTAssertEqual(updated.status, 200, updated.bodyText)

            // What is on disk: every version, without the numbers; the e-mail (not protected) as sent.
            for version in [1, 2] {
                let record = try await store.vread(ResourceKey("Patient", pid), version: version)
                let stored = String(buffer: try XCTUnwrap(record?.content))
                XCTAssertFalse(stored.contains(Self.id), stored)
                XCTAssertFalse(stored.contains(Self.phone), stored)
                XCTAssertFalse(stored.contains(String(Self.id.dropLast(4))), "no prefix of the number either")
                XCTAssertTrue(stored.contains(IdentifierProtection.encryptedValueURL))
                XCTAssertTrue(stored.contains("wu.min@example.cn"))
                XCTAssertTrue(stored.contains("MRN-7"))
            }
            // The index holds blind codes: the plain number finds nothing at the store.
            let plain = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: nil, code: Self.id)])])
            let byPlain = try await store.search(plain, limit: 10)
            XCTAssertEqual(byPlain, [])
            let block = try await store.resources(of: "Patient", withToken: BlockingKeys.parameter, codes: ["rid:" + Self.id, "tel:" + Self.phone],
                                                  limitPerCode: 10)
            XCTAssertTrue(block.matches.values.allSatisfy(\.isEmpty), "the master index's blocking keys are blinded too")

            // Through the API every exact form finds the Patient.
            for query in ["identifier=urn:oid:2.16.156.10011.1.3|\(Self.id)", "identifier=\(Self.id)",
                          "identifier=\(Self.id.lowercased())", "phone=\(Self.phone)", "telecom=phone|\(Self.phone)",
                          "phone=138-0013-8000", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NNCHN|\(Self.id)",
                          "identifier:not=\(Self.id)&name=吴"] {
                let r = try await server.request(.get, "/fhir/Patient?\(query)")
                XCTAssertEqual(r.status, 200, r.bodyText)
                let found = (r.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue }
                XCTAssertEqual(found, query.hasPrefix("identifier:not") ? [] : [pid], query)
            }
            let other = try await server.request(.get, "/fhir/Patient?identifier=\(residentID("1990-03-07", 124, region: "110101"))")
            XCTAssertEqual(other.json["entry"]?.arrayValue?.count ?? 0, 0, "another number finds nothing")

            // Conditional create by the number finds the existing Patient rather than making another.
            let again = try await server.request(.post, "/fhir/Patient", Self.patient(),
                                                 headers: ["If-None-Exist": "identifier=urn:oid:2.16.156.10011.1.3|\(Self.id)"])
            XCTAssertEqual(again.status, 200, again.bodyText)
            XCTAssertEqual(again.id, pid)
            // A value in the ID number system that does not look like a number is protected and found too.
            let odd = #"{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"temp-no-id"}]}"#
            let oddIDs = try await [server.request(.post, "/fhir/Patient", odd, headers: ["If-None-Exist": "identifier=urn:oid:2.16.156.10011.1.3|temp-no-id"]),
                                    server.request(.post, "/fhir/Patient", odd, headers: ["If-None-Exist": "identifier=urn:oid:2.16.156.10011.1.3|temp-no-id"])]
            XCTAssertEqual(oddIDs.map(\.status), [201, 200])
            XCTAssertEqual(oddIDs[0].id, oddIDs[1].id)
            // PIXm by the number.
            let pix = try await server.request(.get, "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:oid:2.16.156.10011.1.3|\(Self.id)")
            XCTAssertEqual(pix.status, 200, pix.bodyText)
            XCTAssertTrue(pix.bodyText.contains(Self.id), "the administrator sees the identifiers in clear")

            // The audit trail of those searches does not hold the numbers either.
            let trail = try await server.request(.get, "/fhir/AuditEvent?_count=100")
            // (`entity.query` is base64Binary: decoded here.)
            let queries = (trail.json["entry"]?.arrayValue ?? []).flatMap { $0["resource"]?["entity"]?.arrayValue ?? [] }
                .compactMap { $0["query"]?.stringValue.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) } }
            XCTAssertGreaterThan(queries.count, 8)
            XCTAssertFalse(trail.bodyText.contains(Self.id), trail.bodyText)
            XCTAssertFalse(queries.contains { $0.contains(Self.id) || $0.contains(Self.phone) || $0.contains(Self.id.lowercased()) }, "\(queries)")
            XCTAssertTrue(queries.contains { $0.contains(IdentifierProtection.masked(Self.id, kind: "id")) }, "searches are audited with the number masked")
            XCTAssertTrue(queries.contains { $0.contains("138****8000") }, "\(queries)")
        }
    }

    func test_theWriterAndTheResidentSeeTheNumbers_anotherFacilitySeesThemMasked() async throws {
        try await TestServer.run(development: false) { server, store in
            let a = try await clientHeaders(server, store, "org-a"), b = try await clientHeaders(server, store, "org-b")
            let admin = try await clientHeaders(server, store, nil, .administrator)
            let created = try await server.request(.post, "/fhir/Patient", Self.patient(), headers: a)
            XCTAssertEqual(created.status, 201, created.bodyText)
            XCTAssertTrue(created.bodyText.contains(Self.id), "the create response shows what the facility sent")
            let pid = try XCTUnwrap(created.id)
            // B treats the resident: it may read A's registration, with the numbers masked.
            let admitted = try await server.request(.post, "/fhir/Encounter",
                                                    #"{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/\#(pid)"}}"#,
                                                    headers: b)
            XCTAssertEqual(admitted.status, 201)

            func identifiers(_ resource: JSON?) -> [String] {
                ((resource?["identifier"]?.arrayValue ?? []) + (resource?["telecom"]?.arrayValue ?? [])).compactMap { $0["value"]?.stringValue }
            }
            for who in [a, admin] {
                let r = try await server.request(.get, "/fhir/Patient/\(pid)", headers: who)
                XCTAssertEqual(r.status, 200)
                XCTAssertEqual(identifiers(r.json), [Self.id, "MRN-7", Self.phone, "wu.min@example.cn"])
                XCTAssertNil(r.json["meta"]?["security"])
                XCTAssertNil(r.json["identifier"]?[0]?["_value"], "no trace of the stored form")
            }
            let maskedID = String(Self.id.prefix(4)) + "**********" + String(Self.id.suffix(4))
            let read = try await server.request(.get, "/fhir/Patient/\(pid)", headers: b)
            XCTAssertEqual(read.status, 200, read.bodyText)
            XCTAssertEqual(identifiers(read.json), [maskedID, "MRN-7", "138****8000", "wu.min@example.cn"])
            XCTAssertEqual(read.json["meta"]?["security"]?[0]?["code"]?.stringValue, "MASKED")
            XCTAssertEqual(read.json["identifier"]?[0]?["use"]?.stringValue, "official", "the rest of the element is kept")
            // Masked wherever the record appears: search, _include, history, $everything, the master Person.
            let searched = try await server.request(.get, "/fhir/Patient?identifier=\(Self.id)", headers: b)
            XCTAssertEqual(identifiers(searched.json["entry"]?[0]?["resource"]).first, maskedID)
            let included = try await server.request(.get, "/fhir/Encounter?subject=Patient/\(pid)&_include=Encounter:subject", headers: b)
            let includedPatient = (included.json["entry"]?.arrayValue ?? []).first { $0["resource"]?["resourceType"]?.stringValue == "Patient" }
            XCTAssertEqual(identifiers(includedPatient?["resource"]).first, maskedID)
            let history = try await server.request(.get, "/fhir/Patient/\(pid)/_history", headers: b)
            XCTAssertEqual(identifiers(history.json["entry"]?[0]?["resource"]).first, maskedID, history.bodyText)
            let everything = try await server.request(.get, "/fhir/Patient/\(pid)/$everything", headers: b)
            XCTAssertFalse(everything.bodyText.contains(Self.id))
            XCTAssertTrue(everything.bodyText.contains(maskedID))
            for who in [a, b] {
                let person = try await server.request(.get, "/fhir/Person?link=Patient/\(pid)", headers: who)
                XCTAssertEqual(person.status, 200, person.bodyText)
                XCTAssertFalse(person.bodyText.contains(Self.id), "the master Person is the platform's: masked to facilities")
            }
            let personAsAdmin = try await server.request(.get, "/fhir/Person?link=Patient/\(pid)", headers: admin)
            XCTAssertTrue(personAsAdmin.bodyText.contains(Self.id))
            let pix = try await server.request(.get, "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:huitong:mrn:a|MRN-7", headers: b)
            XCTAssertEqual(pix.status, 200, pix.bodyText)
            XCTAssertFalse(pix.bodyText.contains(Self.id))
            XCTAssertTrue(pix.bodyText.contains(maskedID))

            // The resident sees their own numbers.
            let personID = try XCTUnwrap(personAsAdmin.json["entry"]?[0]?["resource"]?["id"]?.stringValue)
            let me = Principal(kind: .user, subject: "wu.min", role: .resident, scopes: SMARTScope.parseList("patient/*.rs"),
                               patient: "Person/\(personID)")
            let resident = bearer(try await server.tokens.issue(for: me).token)
            let own = try await server.request(.get, "/fhir/Patient/\(pid)", headers: resident)
            XCTAssertEqual(own.status, 200, own.bodyText)
            XCTAssertEqual(identifiers(own.json).first, Self.id)
        }
    }

    func test_patchAndTransactionsWorkOnTheNumbersInClear() async throws {
        try await TestServer.run { server, store in
            let first = try await server.request(.post, "/fhir/Patient", Self.patient())
            let pid = try XCTUnwrap(first.id)
            let patch = #"[{"op":"test","path":"/identifier/0/value","value":"\#(Self.id)"},{"op":"replace","path":"/telecom/0/value","value":"13900139000"}]"#
            let patched = try await server.request(.patch, "/fhir/Patient/\(pid)", patch, headers: ["Content-Type": "application/json-patch+json"])
            XCTAssertEqual(patched.status, 200, patched.bodyText)
            XCTAssertEqual(patched.json["telecom"]?[0]?["value"]?.stringValue, "13900139000")
            XCTAssertEqual(patched.json["identifier"]?[0]?["value"]?.stringValue, Self.id, "the number survives a patch of another element")
            let byNew = try await server.request(.get, "/fhir/Patient?phone=13900139000")
            XCTAssertEqual(byNew.json["entry"]?.arrayValue?.count, 1)
            let byOld = try await server.request(.get, "/fhir/Patient?phone=\(Self.phone)")
            XCTAssertEqual(byOld.json["entry"]?.arrayValue?.count ?? 0, 0)

            let second = residentID("1985-11-02", 88, region: "510104")
            let bundle = #"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":\#(Self.patient(id: second, phone: "13700137000")),"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"urn:uuid:1"}},"request":{"method":"POST","url":"Observation"}}]}"#
            let tx = try await server.request(.post, "/fhir", bundle, headers: ["Prefer": "return=representation"])
            XCTAssertEqual(tx.status, 200, tx.bodyText)
            XCTAssertTrue(tx.bodyText.contains(second), "the transaction response shows the writer its numbers")
            let found = try await server.request(.get, "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|\(second)")
            let newID = try XCTUnwrap(found.json["entry"]?[0]?["resource"]?["id"]?.stringValue)
            let record = try await store.read(ResourceKey("Patient", newID))
            let stored = String(buffer: try XCTUnwrap(record?.content))
            XCTAssertFalse(stored.contains(second))
            // The two residents stay apart; a second registration with the same number joins the first.
            let twin = try await server.request(.post, "/fhir/Patient",
                                                Self.patient(id: second, phone: "13700137000").replacingOccurrences(of: "MRN-7", with: "MRN-8"))
            let p1 = try await masterPerson(server, of: newID), p2 = try await masterPerson(server, of: try XCTUnwrap(twin.id))
            XCTAssertEqual(p1?["id"], p2?["id"], "the master index still matches on the encrypted number")
            let p0 = try await masterPerson(server, of: pid)
            XCTAssertNotEqual(p0?["id"], p1?["id"])
        }
    }

    /// Documents at rest: a Binary's and an Attachment's `data` (a CDA with the resident's ID
    /// number and name in its header) are sealed whole; whoever reads the record gets the exact
    /// bytes back, masked view or not; a sealed document does not open as an identifier nor under
    /// another keyring.
    func test_documentsAreSealedAtRestAndOpenedWhole() throws {
        let protection = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
        let cda = "<ClinicalDocument><recordTarget><patientRole><id root=\"2.16.156.10011.1.3\" extension=\"\(Self.id)\"/>"
            + "<patient><name>吴敏</name></patient></patientRole></recordTarget></ClinicalDocument>"
        let text = Base64.encode(Array(cda.utf8))
        let binary = try XCTUnwrap(JSONParser.parse(#"{"resourceType":"Binary","contentType":"application/hl7-v3+xml","data":"\#(text)","_data":{"id":"d1"}}"#).objectValue)
        let report = try XCTUnwrap(JSONParser.parse(#"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"CT"},"presentedForm":[{"contentType":"application/pdf","data":"\#(text)","title":"报告"}]}"#).objectValue)
        for (type, resource) in [("Binary", binary), ("DiagnosticReport", report)] {
            let (stored, secrets) = protection.protect(resource, type: type)
            let bytes = String(decoding: JSONWriter.bytes(.object(stored)), as: UTF8.self)
            XCTAssertTrue(secrets.isEmpty, "a document adds nothing to the index")
            XCTAssertFalse(bytes.contains(text), type)
            XCTAssertFalse(bytes.contains(Self.id), type)
            XCTAssertFalse(bytes.contains("\"data\""), type)
            XCTAssertTrue(bytes.withCString { IdentifierProtection.holdsEncrypted(UnsafeRawBufferPointer(start: $0, count: strlen($0))) })
            XCTAssertEqual(protection.reveal(stored), resource, type)
            XCTAssertEqual(protection.mask(stored), resource, "the masked view opens documents too (\(type))")
            // Another store's keyring leaves it sealed: no data rather than wrong data.
            let other = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "t1"))
            XCTAssertEqual(other.reveal(stored), stored)
            // As a reader sees it, the token it cannot use gives way to R4's data-absent-reason;
            // the document's other elements (its id) stay.
            for shown in [other.reveal(stored, shown: true), other.mask(stored)] {
                let text = JSONWriter.string(.object(shown))
                XCTAssertFalse(text.contains("encrypted-value"), text)
                XCTAssertTrue(text.contains(#"{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"error"}"#), text)
                XCTAssertEqual(type == "Binary" ? shown["_data"]?["id"]?.stringValue : shown["presentedForm"]?[0]?["title"]?.stringValue,
                               type == "Binary" ? "d1" : "报告")
                XCTAssertNil(type == "Binary" ? shown["data"] : shown["presentedForm"]?[0]?["data"])
            }
        }
        // Base64 with line breaks (the spec's own examples) reads back exactly as sent, and as the same bytes.
        let folded = Data(Array(cda.utf8)).base64EncodedString(options: .lineLength64Characters)
        XCTAssertTrue(folded.contains("\r\n"))
        var foldedBinary = binary
        foldedBinary["data"] = .string(folded)
        let sealedFolded = protection.protect(foldedBinary, type: "Binary").stored
        XCTAssertFalse(JSONWriter.string(.object(sealedFolded)).contains(String(folded.prefix(40))))
        XCTAssertEqual(protection.reveal(sealedFolded), foldedBinary)
        var tokenText = try XCTUnwrap(sealedFolded["_data"]?["extension"]?[0]?["valueString"]?.stringValue)
        XCTAssertEqual(tokenText.withUTF8 { protection.openDocument(token: UnsafeRawBufferPointer($0)) }, Data(cda.utf8))
        // Binary's own `_data` extensions are kept beside the sealed document.
        XCTAssertEqual(protection.protect(binary, type: "Binary").stored["_data"]?["id"]?.stringValue, "d1")
        // A sealed phone number moved into a document's place does not open as one (the kind is authenticated).
        let patient = try XCTUnwrap(JSONParser.parse(Self.patient()).objectValue)
        let sealedPhone = try XCTUnwrap(protection.protect(patient, type: "Patient").stored["telecom"]?.arrayValue?.first?["_value"])
        var moved = protection.protect(binary, type: "Binary").stored
        moved["_data"] = sealedPhone
        XCTAssertNil(protection.reveal(moved)["data"])
        // An attachment without its contentType (R4 asks for one; nothing refuses it) is a document too.
        let photo = try XCTUnwrap(JSONParser.parse(#"{"resourceType":"Patient","photo":[{"data":"\#(text)","title":"照片"}]}"#).objectValue)
        let sealedPhoto = protection.protect(photo, type: "Patient").stored
        XCTAssertFalse(JSONWriter.string(.object(sealedPhoto)).contains(text))
        XCTAssertEqual(protection.reveal(sealedPhoto), photo)
        // Data that is not a document (a Signature's, beside who and when) is left alone.
        let signature = try XCTUnwrap(JSONParser.parse(#"{"resourceType":"Provenance","signature":[{"type":[{"code":"1.2.840.10065.1.12.1.1"}],"when":"2026-12-06T10:00:00+08:00","who":{"display":"x"},"data":"\#(text)"}]}"#).objectValue)
        XCTAssertEqual(protection.protect(signature, type: "Provenance").stored, signature)
    }
}
