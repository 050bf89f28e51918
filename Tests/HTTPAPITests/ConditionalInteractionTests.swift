import FHIRModel
import HTTPTypes
import Store
import XCTest

private let identifier = "urn:oid:2.16.156.10011.1.1|110101199003071234"

final class ConditionalInteractionTests: XCTestCase {
    func test_conditionalCreate_withExistingMatch_returns200AndDoesNotCreate() async throws {
        try await TestServer.run { server, store in
            let first = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "110101199003071234"),
                                                 headers: ["If-None-Exist": "identifier=\(identifier)"])
            XCTAssertEqual(first.status, 201)
            let second = try await server.request(.post, "/fhir/Patient", patientJSON(given: "other", identifier: "110101199003071234"),
                                                  headers: ["If-None-Exist": "identifier=\(identifier)"])
            XCTAssertEqual(second.status, 200)
            XCTAssertEqual(second.id, first.id)
            XCTAssertEqual(second.versionId, "1")
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 1)
        }
    }

    func test_conditionalCreate_concurrent_createsExactlyOne() async throws {
        try await TestServer.run { server, store in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "110101199003071234"),
                                                 headers: ["If-None-Exist": "identifier=\(identifier)"]).status
                    }
                }
                var all: [Int] = []
                for try await s in group { all.append(s) }
                return all
            }
            XCTAssertEqual(statuses.filter { $0 == 201 }.count, 1)
            XCTAssertEqual(statuses.filter { $0 == 200 }.count, 19)
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 1)
        }
    }

    func test_conditionalCreate_withMultipleMatches_is412() async throws {
        try await TestServer.run { server, _ in
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "X1"))
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "X1"))
            let r = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "X1"),
                                             headers: ["If-None-Exist": "identifier=urn:oid:2.16.156.10011.1.1|X1"])
            XCTAssertEqual(r.status, 412)
        }
    }

    func test_conditionalCreate_withUnsupportedParameter_is400() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: ["If-None-Exist": "shoe-size=42"])
            XCTAssertEqual(r.status, 400)
        }
    }

    func test_conditionalUpdate_createsWhenNoMatch_updatesSingleMatch_refusesMultiple() async throws {
        try await TestServer.run { server, _ in
            let created = try await server.request(.put, "/fhir/Patient?identifier=\(identifier)", patientJSON(identifier: "110101199003071234"))
            XCTAssertEqual(created.status, 201)
            let updated = try await server.request(.put, "/fhir/Patient?identifier=\(identifier)",
                                                   patientJSON(given: "新", identifier: "110101199003071234"))
            XCTAssertEqual(updated.status, 200)
            XCTAssertEqual(updated.id, created.id)
            XCTAssertEqual(updated.versionId, "2")
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(family: "李", identifier: "dup"))
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(family: "李", identifier: "dup"))
            let multiple = try await server.request(.put, "/fhir/Patient?family=李", patientJSON(family: "李"))
            XCTAssertEqual(multiple.status, 412)
        }
    }

    func test_conditionalUpdate_noMatch_withIdOfAnotherResource_doesNotOverwriteIt() async throws {
        try await TestServer.run { server, _ in
            _ = try await server.request(.put, "/fhir/Patient/taken", patientJSON(family: "原", id: "taken"))
            let r = try await server.request(.put, "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.1|nobody",
                                             patientJSON(family: "新", identifier: "nobody", id: "taken"))
            XCTAssertEqual(r.status, 409, r.bodyText)
            let kept = try await server.request(.get, "/fhir/Patient/taken")
            XCTAssertEqual(kept.json["name"]?.arrayValue?.first?["family"]?.stringValue, "原")
        }
    }

    func test_conditionalDelete_singleMatchDeletes_multipleIs412() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "D1")).id!
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "D2"))
            _ = try await server.request(.post, "/fhir/Patient", patientJSON(identifier: "D2"))
            let deleted = try await server.request(.delete, "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.1|D1")
            XCTAssertEqual(deleted.status, 204)
            let gone = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(gone.status, 410)
            let multiple = try await server.request(.delete, "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.1|D2")
            XCTAssertEqual(multiple.status, 412)
            let none = try await server.request(.delete, "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.1|nobody")
            XCTAssertEqual(none.status, 200)
        }
    }

    func test_jsonPatch_appliesOperations_andRefusesInvalidResult() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            let patch = #"[{"op":"replace","path":"/gender","value":"female"},{"op":"add","path":"/birthDate","value":"1990-03-07"},{"op":"test","path":"/name/0/family","value":"张"}]"#
            let r = try await server.request(.patch, "/fhir/Patient/\(id)", patch, headers: ["Content-Type": "application/json-patch+json"])
            XCTAssertEqual(r.status, 200, r.bodyText)
            XCTAssertEqual(r.json["gender"]?.stringValue, "female")
            XCTAssertEqual(r.json["birthDate"]?.stringValue, "1990-03-07")
            XCTAssertEqual(r.versionId, "2")
            let failedTest = try await server.request(.patch, "/fhir/Patient/\(id)", #"[{"op":"test","path":"/gender","value":"male"}]"#,
                                                      headers: ["Content-Type": "application/json-patch+json"])
            XCTAssertEqual(failedTest.status, 422)
            let invalid = try await server.request(.patch, "/fhir/Patient/\(id)", #"[{"op":"add","path":"/birthDate","value":"1990-02-30"}]"#,
                                                   headers: ["Content-Type": "application/json-patch+json"])
            XCTAssertEqual(invalid.status, 400)
            XCTAssertEqual(invalid.issueLocations, ["Patient.birthDate"])
            let stale = try await server.request(.patch, "/fhir/Patient/\(id)", #"[{"op":"remove","path":"/birthDate"}]"#,
                                                 headers: ["Content-Type": "application/json-patch+json", "If-Match": "W/\"1\""])
            XCTAssertEqual(stale.status, 412)
            let current = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(current.versionId, "2")
        }
    }

    /// A patch that copies a part of the resource into itself doubles it each time: forty lines
    /// would ask for 2^40 values. Refused (422) before the document grows, and nothing is stored.
    func test_jsonPatch_thatKeepsDoublingTheResource_isRefused() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            var ops = [#"{"op":"add","path":"/extension","value":[{"url":"http://x","extension":[]}]}"#]
            for _ in 0..<40 { ops.append(#"{"op":"copy","from":"/extension/0","path":"/extension/0/extension/-"}"#) }
            let r = try await server.request(.patch, "/fhir/Patient/\(id)", "[" + ops.joined(separator: ",") + "]",
                                             headers: ["Content-Type": "application/json-patch+json"])
            XCTAssertEqual(r.status, 422, r.bodyText)
            XCTAssertEqual(r.json["issue"]?[0]?["code"]?.stringValue, "too-costly")
            let current = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(current.versionId, "1")
        }
    }

    func test_concurrentPatches_doNotLoseUpdates() async throws {
        try await TestServer.run { server, _ in
            let id = try await server.request(.post, "/fhir/Patient", patientJSON()).id!
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<10 {
                    group.addTask {
                        let patch = #"[{"op":"add","path":"/name/0/given/-","value":"g\#(i)"}]"#
                        let r = try await server.request(.patch, "/fhir/Patient/\(id)", patch, headers: ["Content-Type": "application/json-patch+json"])
                        XCTAssertEqual(r.status, 200, r.bodyText)
                    }
                }
                try await group.waitForAll()
            }
            let current = try await server.request(.get, "/fhir/Patient/\(id)")
            XCTAssertEqual(current.json["name"]?.arrayValue?.first?["given"]?.arrayValue?.count, 11)
            XCTAssertEqual(current.versionId, "11")
        }
    }
}
