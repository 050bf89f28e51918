import FHIRModel
import HTTPTypes
import Store
import XCTest

final class BundleTests: XCTestCase {
    func test_transaction_rewritesUrnUuidReferencesAcrossEntries() async throws {
        try await TestServer.run { server, _ in
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111",
               "resource":{"resourceType":"Observation","status":"final","code":{"text":"血压"},
                           "subject":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}},
               "request":{"method":"POST","url":"Observation"}},
              {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222",
               "resource":{"resourceType":"Patient","name":[{"family":"王"}]},
               "request":{"method":"POST","url":"Patient"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200, r.bodyText)
            XCTAssertEqual(r.json["type"]?.stringValue, "transaction-response")
            let entries = r.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(entries.map { $0["response"]?["status"]?.stringValue }, ["201 Created", "201 Created"])
            let obsLocation = try XCTUnwrap(entries[0]["response"]?["location"]?.stringValue)
            let patientLocation = try XCTUnwrap(entries[1]["response"]?["location"]?.stringValue)
            XCTAssertEqual(entries[0]["response"]?["etag"]?.stringValue, "W/\"1\"")
            let obs = try await server.request(.get, "/fhir/" + obsLocation.components(separatedBy: "/_history")[0])
            let patientRef = patientLocation.components(separatedBy: "/_history")[0]
            XCTAssertEqual(obs.json["subject"]?["reference"]?.stringValue, patientRef)
            let patient = try await server.request(.get, "/fhir/" + patientRef)
            XCTAssertEqual(patient.status, 200)
        }
    }

    /// A feed's transaction: results written by conditional update on their identifiers.
    static func results(_ values: [String], status: String = "final") -> String {
        let entries = values.map { v in
            """
            {"resource":{"resourceType":"Observation","status":"\(status)","code":{"text":"血糖"},
                         "identifier":[{"system":"urn:lab:result","value":"\(v)"}]},
             "request":{"method":"PUT","url":"Observation?identifier=urn:lab:result|\(v)"}}
            """
        }
        return #"{"resourceType":"Bundle","type":"transaction","entry":["# + entries.joined(separator: ",") + "]}"
    }

    func test_transaction_conditionalUpdatesByIdentifier_createOnce_thenUpdate_evenSentConcurrently() async throws {
        try await TestServer.run { server, store in
            let first = try await server.request(.post, "/fhir", Self.results(["r1", "r2", "r3"]))
            XCTAssertEqual(first.json["entry"]?.arrayValue?.map { $0["response"]?["status"]?.stringValue }, ["201 Created", "201 Created", "201 Created"])
            // One stored, one new: each is resolved on its own.
            let mixed = try await server.request(.post, "/fhir", Self.results(["r2", "r4"], status: "amended"))
            XCTAssertEqual(mixed.json["entry"]?.arrayValue?.map { $0["response"]?["status"]?.stringValue }, ["200 OK", "201 Created"])
            // The same new results sent by several clients at once: created once, then updated.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        let r = try await server.request(.post, "/fhir", Self.results(["n1", "n2", "n3", "n4"]))
                        XCTAssertEqual(r.status, 200, r.bodyText)
                    }
                }
                try await group.waitForAll()
            }
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Observation"], 8, "r1-r4 and n1-n4, each once")
            let r2 = try await server.request(.get, "/fhir/Observation?identifier=urn:lab:result|r2")
            XCTAssertEqual(r2.json["entry"]?.arrayValue?.first?["resource"]?["status"]?.stringValue, "amended")
        }
    }

    func test_transaction_withOneInvalidEntry_storesNothing() async throws {
        try await TestServer.run { server, store in
            _ = try await server.request(.put, "/fhir/Patient/keep", patientJSON(given: "原", id: "keep"))
            _ = try await server.request(.put, "/fhir/Patient/other", patientJSON(given: "他", id: "other"))
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","name":[{"family":"赵"}]},"request":{"method":"POST","url":"Patient"}},
              {"resource":{"resourceType":"Patient","id":"keep","name":[{"family":"改"}]},"request":{"method":"PUT","url":"Patient/keep"}},
              {"request":{"method":"DELETE","url":"Patient/other"}},
              {"resource":{"resourceType":"Observation","status":"final","effectiveDateTime":"2024-02-30"},"request":{"method":"POST","url":"Observation"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 400)
            XCTAssertEqual(Set(r.issueLocations), ["Bundle.entry[3].resource.effectiveDateTime", "Bundle.entry[3].resource.code"])
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts, ["Patient": 2, "Person": 2], "the two earlier Patients and their master Persons, nothing more")
            let kept = try await server.request(.get, "/fhir/Patient/keep")
            XCTAssertEqual(kept.versionId, "1")
            let other = try await server.request(.get, "/fhir/Patient/other")
            XCTAssertEqual(other.status, 200)
            let history = try await server.request(.get, "/fhir/_history")
            XCTAssertEqual(history.json["total"]?.numberText, "4")
        }
    }

    func test_transaction_failingPrecondition_rollsBackEverything() async throws {
        try await TestServer.run { server, store in
            _ = try await server.request(.put, "/fhir/Patient/p1", patientJSON(id: "p1"))
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","name":[{"family":"钱"}]},"request":{"method":"POST","url":"Patient"}},
              {"resource":{"resourceType":"Patient","id":"p1","gender":"female"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\\"9\\""}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 412)
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 1)
        }
    }

    func test_transaction_processesDeleteBeforePostBeforePutBeforeGet() async throws {
        try await TestServer.run { server, _ in
            _ = try await server.request(.put, "/fhir/Patient/old", patientJSON(id: "old"))
            _ = try await server.request(.put, "/fhir/Patient/upd", patientJSON(given: "v1", id: "upd"))
            // Listed in reverse of processing order; GET must see the PUT, DELETE must not see the POST.
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"request":{"method":"GET","url":"Patient/upd"}},
              {"resource":{"resourceType":"Patient","id":"upd","name":[{"family":"张","given":["v2"]}]},"request":{"method":"PUT","url":"Patient/upd"}},
              {"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Patient","name":[{"family":"新"}]},"request":{"method":"POST","url":"Patient"}},
              {"request":{"method":"DELETE","url":"Patient/old"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200, r.bodyText)
            let entries = r.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(entries.map { $0["response"]?["status"]?.stringValue }, ["200 OK", "200 OK", "201 Created", "204 No Content"])
            XCTAssertEqual(entries[0]["resource"]?["name"]?.arrayValue?.first?["given"]?.arrayValue?.first?.stringValue, "v2")
            let old = try await server.request(.get, "/fhir/Patient/old")
            XCTAssertEqual(old.status, 410)
        }
    }

    func test_transaction_conditionalReferenceAndIfNoneExist_resolveToExistingResources() async throws {
        try await TestServer.run { server, store in
            let orgID = try await server.request(.post, "/fhir/Organization",
                #"{"resourceType":"Organization","identifier":[{"system":"urn:oid:2.16.156.10011.1.5","value":"H001"}],"name":"市第一人民医院"}"#).id!
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"fullUrl":"urn:uuid:44444444-4444-4444-8444-444444444444",
               "resource":{"resourceType":"Organization","identifier":[{"system":"urn:oid:2.16.156.10011.1.5","value":"H001"}],"name":"重复"},
               "request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=urn:oid:2.16.156.10011.1.5|H001"}},
              {"resource":{"resourceType":"Patient","managingOrganization":{"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"},
                           "generalPractitioner":[{"reference":"Organization?identifier=urn:oid:2.16.156.10011.1.5|H001"}]},
               "request":{"method":"POST","url":"Patient"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200, r.bodyText)
            let entries = r.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(entries[0]["response"]?["status"]?.stringValue, "200 OK")
            let patientPath = entries[1]["response"]!["location"]!.stringValue!.components(separatedBy: "/_history")[0]
            let patient = try await server.request(.get, "/fhir/" + patientPath)
            XCTAssertEqual(patient.json["managingOrganization"]?["reference"]?.stringValue, "Organization/\(orgID)")
            XCTAssertEqual(patient.json["generalPractitioner"]?.arrayValue?.first?["reference"]?.stringValue, "Organization/\(orgID)")
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Organization"], 1)
        }
    }

    func test_transaction_unresolvableConditionalReference_failsWhole() async throws {
        try await TestServer.run { server, store in
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","name":[{"family":"孙"}]},"request":{"method":"POST","url":"Patient"}},
              {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=nobody"}},
               "request":{"method":"POST","url":"Observation"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 404)
            let counts = try await store.resourceCounts()
            XCTAssertTrue(counts.isEmpty)
        }
    }

    func test_transaction_withPreferRepresentation_returnsResources() async throws {
        try await TestServer.run { server, _ in
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","name":[{"family":"周"}]},"request":{"method":"POST","url":"Patient"}}]}
            """
            let r = try await server.request(.post, "/fhir", bundle, headers: ["Prefer": "return=representation"])
            let entry = r.json["entry"]?.arrayValue?.first
            XCTAssertEqual(entry?["resource"]?["meta"]?["versionId"]?.stringValue, "1")
            XCTAssertNotNil(entry?["fullUrl"]?.stringValue)
        }
    }

    func test_batch_entriesSucceedOrFailIndependently() async throws {
        try await TestServer.run { server, store in
            let bundle = """
            {"resourceType":"Bundle","type":"batch","entry":[
              {"resource":{"resourceType":"Patient","name":[{"family":"吴"}]},"request":{"method":"POST","url":"Patient"}},
              {"resource":{"resourceType":"Patient","birthDate":"1990-13-45"},"request":{"method":"POST","url":"Patient"}},
              {"request":{"method":"GET","url":"Patient/missing"}}
            ]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.json["type"]?.stringValue, "batch-response")
            let entries = r.json["entry"]?.arrayValue ?? []
            XCTAssertEqual(entries.map { $0["response"]?["status"]?.stringValue }, ["201 Created", "400 Bad Request", "404 Not Found"])
            let issue = entries[1]["response"]?["outcome"]?["issue"]?.arrayValue?.first
            XCTAssertEqual(issue?["expression"]?.arrayValue?.first?.stringValue, "Patient.birthDate")
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 1)
        }
    }

    func test_transaction_conditionalUrlsWhoseValuesAreUrls_hitTheRightType() async throws {
        try await TestServer.run { server, store in
            _ = try await server.request(.post, "/fhir/Practitioner",
                #"{"resourceType":"Practitioner","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"123"}]}"#)
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Practitioner","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"123"}],"gender":"female"},
               "request":{"method":"PUT","url":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}}]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 200, r.bodyText)
            XCTAssertEqual(r.json["entry"]?.arrayValue?.first?["response"]?["status"]?.stringValue, "200 OK")
            let delete = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"request":{"method":"DELETE","url":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}}]}
            """
            let d = try await server.request(.post, "/fhir", delete)
            XCTAssertEqual(d.json["entry"]?.arrayValue?.first?["response"]?["status"]?.stringValue, "204 No Content", d.bodyText)
            let counts = try await store.resourceCounts()
            XCTAssertNil(counts["Practitioner"])
        }
    }

    func test_transaction_putWithoutId_is400() async throws {
        try await TestServer.run { server, _ in
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"PUT","url":"Patient/x"}}]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 400)
        }
    }

    func test_batch_malformedEntryFailsAlone_transactionFailsWhole() async throws {
        try await TestServer.run { server, store in
            let entries = """
            [{"resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}},
             {"resource":{"resourceType":"Patient"},"request":{"method":"POST"}},
             {"request":{"method":"PUT","url":"Patient/x","ifMatch":"nonsense"},"resource":{"resourceType":"Patient","id":"x"}}]
            """
            let batch = try await server.request(.post, "/fhir", #"{"resourceType":"Bundle","type":"batch","entry":"# + entries + "}")
            XCTAssertEqual(batch.status, 200, batch.bodyText)
            let statuses = batch.json["entry"]?.arrayValue?.map { $0["response"]?["status"]?.stringValue }
            XCTAssertEqual(statuses, ["201 Created", "400 Bad Request", "400 Bad Request"])
            let transaction = try await server.request(.post, "/fhir", #"{"resourceType":"Bundle","type":"transaction","entry":"# + entries + "}")
            XCTAssertEqual(transaction.status, 400)
            XCTAssertEqual(Set(transaction.issueLocations), ["Bundle.entry[1].request", "Bundle.entry[2].request.ifMatch"])
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 1)
        }
    }

    func test_bundleOfWrongType_is400() async throws {
        try await TestServer.run { server, _ in
            let r = try await server.request(.post, "/fhir", #"{"resourceType":"Bundle","type":"collection"}"#)
            XCTAssertEqual(r.status, 400)
            XCTAssertEqual(r.issueLocations, ["Bundle.type"])
        }
    }

    func test_transaction_twoEntriesForSameResource_is400() async throws {
        try await TestServer.run { server, _ in
            let bundle = """
            {"resourceType":"Bundle","type":"transaction","entry":[
              {"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a"}},
              {"request":{"method":"DELETE","url":"Patient/a"}}]}
            """
            let r = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(r.status, 400)
        }
    }
}
