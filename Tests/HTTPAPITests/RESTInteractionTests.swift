import FHIRModel
import HTTPTypes
import Store
import XCTest

final class RESTInteractionTests: XCTestCase {
    func test_create_assignsIdAndVersion_andReturnsLocationETagLastModified() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Patient", patientJSON())
            XCTAssertEqual(r.status, 201)
            let id = try XCTUnwrap(r.id)
            XCTAssertEqual(r.versionId, "1")
            XCTAssertEqual(r.header("ETag"), "W/\"1\"")
            XCTAssertNotNil(r.header("Last-Modified"))
            XCTAssertTrue(r.header("Location")?.hasSuffix("/fhir/Patient/\(id)/_history/1") ?? false, r.header("Location") ?? "")
            XCTAssertEqual(r.header("Content-Type"), "application/fhir+json; charset=utf-8")
            XCTAssertNotNil(r.json["meta"]?["lastUpdated"]?.stringValue)
        }
    }

    func test_create_ignoresClientId() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Patient", patientJSON(id: "client-chosen"))
            XCTAssertEqual(r.status, 201)
            XCTAssertNotEqual(r.id, "client-chosen")
        }
    }

    func test_read_returnsStoredBytes_andUnknownIs404() async throws {
        try await TestServer.run { server, _ in
            let created = try await server.request(.post, "/fhir/Patient", patientJSON())
            let read = try await server.request(.get, "/fhir/Patient/\(created.id!)")
            XCTAssertEqual(read.status, 200)
            XCTAssertEqual(read.bodyText, created.bodyText)
            XCTAssertEqual(read.header("ETag"), "W/\"1\"")
            let missing = try await server.request(.get, "/fhir/Patient/does-not-exist")
            XCTAssertEqual(missing.status, 404)
            XCTAssertEqual(missing.json["resourceType"]?.stringValue, "OperationOutcome")
            let badType = try await server.request(.get, "/fhir/Patientx/1")
            XCTAssertEqual(badType.status, 404)
        }
    }

    func test_update_incrementsVersion_andVreadReturnsEachVersion() async throws {
        try await TestServer.run { server, _ in
            let created = try await server.request(.post, "/fhir/Patient", patientJSON(given: "伟"))
            let id = created.id!
            let updated = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(given: "伟明", id: id))
            XCTAssertEqual(updated.status, 200)
            XCTAssertEqual(updated.versionId, "2")
            XCTAssertEqual(updated.header("ETag"), "W/\"2\"")
            let v1 = try await server.request(.get, "/fhir/Patient/\(id)/_history/1")
            XCTAssertEqual(v1.json["name"]?.arrayValue?.first?["given"]?.arrayValue?.first?.stringValue, "伟")
            let v2 = try await server.request(.get, "/fhir/Patient/\(id)/_history/2")
            XCTAssertEqual(v2.json["name"]?.arrayValue?.first?["given"]?.arrayValue?.first?.stringValue, "伟明")
            let v3 = try await server.request(.get, "/fhir/Patient/\(id)/_history/3")
            XCTAssertEqual(v3.status, 404)
        }
    }

    func test_update_withClientId_createsResource_201() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.put, "/fhir/Patient/zhang-wei-1", patientJSON(id: "zhang-wei-1"))
            XCTAssertEqual(r.status, 201)
            XCTAssertEqual(r.id, "zhang-wei-1")
            XCTAssertEqual(r.versionId, "1")
        }
    }

    func test_update_withMismatchedOrMissingId_is400() async throws {
        try await TestServer.run { server, _ in
            let mismatch = try await server.request(.put, "/fhir/Patient/a", patientJSON(id: "b"))
            XCTAssertEqual(mismatch.status, 400)
            let missing = try await server.request(.put, "/fhir/Patient/a", patientJSON())
            XCTAssertEqual(missing.status, 400)
            XCTAssertEqual(missing.issueLocations, ["Patient.id"])
        }
    }

    func test_ifMatch_wrongVersion_is412_rightVersion_updates() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            let stale = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(id: id), headers: ["If-Match": "W/\"7\""])
            XCTAssertEqual(stale.status, 412)
            let ok = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(id: id), headers: ["If-Match": "W/\"1\""])
            XCTAssertEqual(ok.status, 200)
            XCTAssertEqual(ok.versionId, "2")
        }
    }

    func test_concurrentIfMatchUpdates_exactlyOneSucceeds() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(given: "g\(i)", id: id),
                                                 headers: ["If-Match": "W/\"1\""]).status
                    }
                }
                var all: [Int] = []
                for try await s in group { all.append(s) }
                return all
            }
            XCTAssertEqual(statuses.filter { $0 == 200 }.count, 1)
            XCTAssertEqual(statuses.filter { $0 == 412 }.count, 49)
            let current = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(current.versionId, "2")
        }
    }

    func test_delete_thenReadIs410_andHistoryKeepsAllVersions() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            _ = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(given: "二", id: id))
            let deleted = try await server.request(.delete, "/fhir/Patient/\(id)")
            XCTAssertEqual(deleted.status, 204)
            let gone = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(gone.status, 410)
            let history = try await server.request(.get, "/fhir/Patient/\(id)/_history")
            XCTAssertEqual(history.json["type"]?.stringValue, "history")
            XCTAssertEqual(history.json["total"]?.numberText, "3")
            let entries = history.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(entries.map { $0["request"]?["method"]?.stringValue }, ["DELETE", "PUT", "POST"])
            XCTAssertNil(entries[0]["resource"])
            XCTAssertEqual(entries[2]["resource"]?["meta"]?["versionId"]?.stringValue, "1")
            // Deleting again changes nothing.
            let again = try await server.request(.delete, "/fhir/Patient/\(id)")
            XCTAssertEqual(again.status, 200)
            let historyAfter = try await server.request(.get, "/fhir/Patient/\(id)/_history")
            XCTAssertEqual(historyAfter.json["total"]?.numberText, "3")
            // A deleted resource can be brought back by update.
            let revived = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(id: id))
            XCTAssertEqual(revived.status, 201)
            XCTAssertEqual(revived.versionId, "4")
        }
    }

    func test_history_typeAndSystem_withCountPagingAndSince() async throws {
        try await TestServer.run { server, _ in
            for i in 0..<5 { _ = try await server.request(.post, "/fhir/Patient", patientJSON(given: "p\(i)")) }
            let middle = try await server.request(.get, "/fhir/Patient/_history?_count=1").json["entry"]?.arrayValue?.first?["resource"]?["meta"]?["lastUpdated"]?.stringValue
            _ = try await server.request(.post, "/fhir/Organization", #"{"resourceType":"Organization","name":"市第一人民医院"}"#)
            let page1 = try await server.request(.get, "/fhir/Patient/_history?_count=2")
            XCTAssertEqual(page1.json["total"]?.numberText, "5")
            XCTAssertEqual(page1.json["entry"]?.arrayValue?.count, 2)
            var seen = Set<String>()
            var next: String? = "/fhir/Patient/_history?_count=2"
            while let url = next {
                let page = try await server.request(.get, url)
                for e in page.json["entry"]?.arrayValue ?? [] { seen.insert(e["resource"]!["id"]!.stringValue!) }
                // A write between pages does not shift the pages (snapshot bound).
                _ = try await server.request(.post, "/fhir/Patient", patientJSON(given: "late"))
                next = page.json["link"]?.arrayValue?.first { $0["relation"]?.stringValue == "next" }?["url"]?.stringValue
                    .map { String($0[$0.range(of: "/fhir/")!.lowerBound...]) }
            }
            XCTAssertEqual(seen.count, 5)
            let system = try await server.request(.get, "/fhir/_history?_count=100")
            XCTAssertEqual(system.json["total"]?.numberText, "17", "8 Patients, their 8 master Persons, 1 Organization")
            let since = try await server.request(.get, "/fhir/Patient/_history?_since=\(middle!)")
            XCTAssertEqual(since.json["total"]?.numberText, "4", "the newest initial patient and the three written while paging")
            let zero = try await server.request(.get, "/fhir/Patient/_history?_count=0")
            let zeroNext = zero.json["link"]?.arrayValue?.first { $0["relation"]?.stringValue == "next" }?["url"]?.stringValue ?? ""
            XCTAssertFalse(zeroNext.contains("_offset=0&"), "a next link must move forward: \(zeroNext)")
            let badSince = try await server.request(.get, "/fhir/_history?_since=yesterday")
            XCTAssertEqual(badSince.status, 400)
        }
    }

    func test_history_at_returnsVersionsCurrentThen() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON(given: "一")).id!
            let v1Time = try await server.request(.get, "/fhir/Patient/\(id)").json["meta"]!["lastUpdated"]!.stringValue!
            try await Task.sleep(for: .milliseconds(5))
            _ = try await server.request(.put, "/fhir/Patient/\(id)", patientJSON(given: "二", id: id))
            let at = try await server.request(.get, "/fhir/Patient/\(id)/_history?_at=\(v1Time)")
            let versions = at.json["entry"]?.arrayValue?.compactMap { $0["resource"]?["meta"]?["versionId"]?.stringValue }
            XCTAssertEqual(versions, ["1"])
        }
    }

    func test_invalidResource_returnsOperationOutcomeNamingEveryBadElement_andStoresNothing() async throws {
        try await TestServer.run { server, store in
            let body = """
            {"resourceType":"Observation","status":"final","valueQuantity":{"value":"5.4"},
             "effectiveDateTime":"2024-13-01","colour":"red","subject":{"reference":"Patient/"},
             "category":{"text":"not an array"}}
            """
            let r = try await server.request(.post, "/fhir/Observation", body)
            XCTAssertEqual(r.status, 400)
            XCTAssertEqual(r.json["resourceType"]?.stringValue, "OperationOutcome")
            XCTAssertEqual(Set(r.issueLocations), [
                "Observation.valueQuantity.value", "Observation.effectiveDateTime", "Observation.colour",
                "Observation.subject.reference", "Observation.category", "Observation.code",
            ])
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Observation"], nil)
        }
    }

    func test_malformedJSON_is400_withLineAndColumn() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Patient", "{\"resourceType\":\"Patient\",\n \"gender\": male}")
            XCTAssertEqual(r.status, 400)
            let diagnostics = r.json["issue"]?.arrayValue?.first?["diagnostics"]?.stringValue ?? ""
            XCTAssertTrue(diagnostics.contains("line 2"), diagnostics)
        }
    }

    func test_wrongTypeForEndpoint_is400() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Observation", patientJSON())
            XCTAssertEqual(r.status, 400)
        }
    }

    func test_xmlBodyIsRefusedWith415_xmlResponseWith406() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Patient", "<Patient xmlns=\"http://hl7.org/fhir\"/>",
                                             headers: ["Content-Type": "application/fhir+xml"])
            XCTAssertEqual(r.status, 415)
            XCTAssertEqual(r.json["resourceType"]?.stringValue, "OperationOutcome")
            let format = try await server.request(.get, "/fhir/metadata?_format=xml")
            XCTAssertEqual(format.status, 406, "an XML response cannot be produced: Not Acceptable")
            let jsonFormat = try await server.request(.get, "/fhir/metadata?_format=json")
            XCTAssertEqual(jsonFormat.status, 200)
        }
    }

    func test_bodyOverLimit_is413() async throws {
        try await TestServer.run(maxBodyBytes: 1000) { server, _ in
            let big = patientJSON(family: String(repeating: "长", count: 1000))
            let r = try await server.request(.post, "/fhir/Patient", big)
            XCTAssertEqual(r.status, 413)
        }
    }

    func test_preferReturn_minimalAndOperationOutcome() async throws {
        try await TestServer.run { server, _ in
            let minimal = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: ["Prefer": "return=minimal"])
            XCTAssertEqual(minimal.status, 201)
            XCTAssertEqual(minimal.bodyText, "")
            XCTAssertNotNil(minimal.header("Location"))
            let outcome = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: ["Prefer": "return=OperationOutcome"])
            XCTAssertEqual(outcome.json["resourceType"]?.stringValue, "OperationOutcome")
        }
    }

    func test_anyR4ResourceType_isAccepted() async throws {
        try await TestServer.run { server, _ in
            let claim = """
            {"resourceType":"SupplyDelivery","status":"completed","patient":{"reference":"Patient/x"},
             "suppliedItem":{"quantity":{"value":1}}}
            """
            let r = try await server.request(.post, "/fhir/SupplyDelivery", claim)
            XCTAssertEqual(r.status, 201, r.bodyText)
        }
    }

    func test_metadata_listsEveryTypeWithInteractionsAndSearchParams() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.get, "/fhir/metadata")
            XCTAssertEqual(r.json["resourceType"]?.stringValue, "CapabilityStatement")
            XCTAssertEqual(r.json["fhirVersion"]?.stringValue, "4.0.1")
            let resources = r.json["rest"]?.arrayValue?.first?["resource"]?.arrayValue ?? []
            XCTAssertGreaterThanOrEqual(resources.count, 145)
            let patient = resources.first { $0["type"]?.stringValue == "Patient" }
            let params = patient?["searchParam"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
            XCTAssertTrue(params.contains("identifier"))
            let interactions = patient?["interaction"]?.arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
            XCTAssertTrue(interactions.contains("vread") && interactions.contains("patch"))
        }
    }

    func test_statusPage_healthAndReady() async throws {
        try await TestServer.run { server, _ in
            _ = try await server.request(.post, "/fhir/Patient", patientJSON())
            let page = try await server.request(.get, "/")
            XCTAssertEqual(page.status, 200)
            XCTAssertTrue(page.bodyText.contains("/fhir/metadata"))
            // Public: nothing about the data it holds (not even how much of it there is).
            XCTAssertFalse(page.bodyText.contains("Patient"))
            let health = try await server.request(.get, "/health")
            XCTAssertEqual(health.status, 200)
            let ready = try await server.request(.get, "/ready")
            XCTAssertEqual(ready.status, 200)
        }
    }
}
