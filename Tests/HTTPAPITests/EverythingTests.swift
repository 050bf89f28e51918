import FHIRModel
import HTTPTypes
import Platform
import Store
import XCTest

final class EverythingTests: XCTestCase {
    func test_patientEverything_returnsCompartmentAndSupportingResources_pagedWithoutDuplicates() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Organization", "org", #"{"name":"医院"}"#)
            try await putResource(server, "Practitioner", "dr", #"{"name":[{"family":"李"}]}"#)
            try await putResource(server, "Patient", "p", #"{"managingOrganization":{"reference":"Organization/org"}}"#)
            try await putResource(server, "Patient", "other", #"{"gender":"male"}"#)
            for i in 0..<25 {
                try await putResource(server, "Observation", "o\(i)", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p"},"performer":[{"reference":"Practitioner/dr"}]}"#)
            }
            try await putResource(server, "Observation", "not-mine", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/other"}}"#)
            var all: [String] = []
            var next: String? = "/fhir/Patient/p/$everything?_count=10"
            while let url = next {
                let page = try await server.request(.get, url)
                XCTAssertEqual(page.status, 200, page.bodyText)
                all += (page.json["entry"]?.arrayValue ?? []).compactMap { e in
                    e["resource"].flatMap { r in r["id"]?.stringValue.map { "\(r["resourceType"]!.stringValue!)/\($0)" } }
                }
                next = page.json["link"]?.arrayValue?.first { $0["relation"]?.stringValue == "next" }?["url"]?.stringValue
                    .map { String($0[$0.range(of: "/fhir/")!.lowerBound...]) }
            }
            let compartment = Set(all.filter { !$0.hasPrefix("Practitioner/") && !$0.hasPrefix("Organization/") && !$0.hasPrefix("Person/") })
            XCTAssertEqual(compartment, Set(["Patient/p"] + (0..<25).map { "Observation/o\($0)" }))
            XCTAssertEqual(all.filter { $0.hasPrefix("Person/") }.count, 1, "the master Person links the patient (Person is in the Patient compartment)")
            XCTAssertEqual(all.filter { $0.hasPrefix("Observation/") }.count, 25, "no duplicates across pages")
            XCTAssertTrue(all.contains("Practitioner/dr"))
            XCTAssertTrue(all.contains("Organization/org"))
            XCTAssertFalse(all.contains("Observation/not-mine"))

            let typed = try await server.request(.get, "/fhir/Patient/p/$everything?_type=Patient&_count=100")
            XCTAssertEqual(typed.json["entry"]?.arrayValue?.count, 1)
            let missing = try await server.request(.get, "/fhir/Patient/nobody/$everything")
            XCTAssertEqual(missing.status, 404)

            // Type level: every patient and everything that references one.
            try await putResource(server, "Location", "unlinked", #"{"name":"无关"}"#)
            let typeLevel = try await server.request(.get, "/fhir/Patient/$everything?_count=1000")
            XCTAssertEqual(typeLevel.status, 200, typeLevel.bodyText)
            let keys = Set((typeLevel.json["entry"]?.arrayValue ?? []).compactMap { e in
                e["resource"].flatMap { r in r["id"]?.stringValue.map { "\(r["resourceType"]!.stringValue!)/\($0)" } }
            })
            XCTAssertTrue(keys.isSuperset(of: ["Patient/p", "Patient/other", "Observation/not-mine", "Observation/o0", "Practitioner/dr"]))
            XCTAssertFalse(keys.contains("Location/unlinked"))
        }
    }

    func test_compartmentSearch_onlyThePatientsResources() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Observation", "a", #"{"status":"final","code":{"coding":[{"code":"bp"}]},"subject":{"reference":"Patient/p"}}"#)
            try await putResource(server, "Observation", "b", #"{"status":"final","code":{"coding":[{"code":"hr"}]},"subject":{"reference":"Patient/p"}}"#)
            try await putResource(server, "Observation", "c", #"{"status":"final","code":{"coding":[{"code":"bp"}]},"subject":{"reference":"Patient/q"}}"#)
            let ids = try await searchIDs(server, "Patient/p/Observation?code=bp")
            XCTAssertEqual(ids, ["a"])
            let all = try await searchIDs(server, "Patient/p/Observation")
            XCTAssertEqual(all, ["a", "b"])
            try await putResource(server, "Encounter", "e", #"{"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p"}}"#)
            let count = try await server.request(.get, "/fhir/Patient/p/Observation?_summary=count")
            XCTAssertEqual(count.json["total"]?.numberText, "2", "the count covers only the searched type")
            let codeCount = try await server.request(.get, "/fhir/Observation?code=bp&_summary=count")
            XCTAssertEqual(codeCount.json["total"]?.numberText, "2")
            _ = try await server.request(.delete, "/fhir/Observation/c")
            let afterDelete = try await server.request(.get, "/fhir/Observation?code=bp&_summary=count")
            XCTAssertEqual(afterDelete.json["total"]?.numberText, "1", "deleted resources are not counted")
            let history = try await server.request(.get, "/fhir/Observation/a/_history")
            XCTAssertEqual(history.json["type"]?.stringValue, "history", "the _history route still wins over the compartment route")
        }
    }
}
