import Access
import FHIRModel
import Foundation
import HTTPTypes
import Platform
import Store
import XCTest

/// A domain module adds an operation by registering it (ADR 019): the HTTP layer dispatches to it,
/// the CapabilityStatement lists it, its OperationDefinition is generated, and the access decision
/// registered with it is made before its handler runs.
final class OperationRegistryTests: XCTestCase {
    /// A stand-in for a domain module's operation: `Patient/{id}/$summary-count`, counting the
    /// patient's Observations it may see (through the core's search, which carries the access decision).
    static let summaryCount = RegisteredOperation(
        name: "summary-count", resourceTypes: ["Patient"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "Count a patient's observations", documentation: "How many Observations of the patient the caller may read",
        parameters: [.init("count", .out, min: 1, type: "integer", "The number")],
        access: { _ in (.search, "Observation") },
        handler: { service, request in
            let query = try SearchQueryParser(protection: service.pipeline.protection).parse(type: "Observation", query: "subject=Patient/\(request.id!)")
            let found = try await service.store.search(query.scoped(try await service.readScope()), limit: 1000)
            return .resource(.object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array([
                .object(JSONObject([("name", .string("count")), ("valueInteger", .number(String(found.count)))])),
            ]))])))
        })

    func test_aRegisteredOperation_isDispatchedListedDefinedAndDecided() async throws {
        let registry = OperationRegistry(OperationRegistry.platform.operations + [Self.summaryCount])
        try await TestServer.run(development: false, operations: registry) { server, store in
            let his = try await clientHeaders(server, store, "org-1")
            let p = try await server.request(.post, "/fhir/Patient", patientJSON(), headers: his)
            let pid = try XCTUnwrap(p.id)
            for _ in 0..<3 {
                _ = try await server.request(.post, "/fhir/Observation", #"{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/\#(pid)"}}"#, headers: his)
            }
            let counted = try await server.request(.get, "/fhir/Patient/\(pid)/$summary-count", headers: his)
            XCTAssertEqual(counted.status, 200, counted.bodyText)
            XCTAssertEqual(counted.json["parameter"]?[0]?["valueInteger"]?.numberText, "3")

            // Another facility sees none of them: the core's search decided, not the handler.
            let other = try await clientHeaders(server, store, "org-2")
            let none = try await server.request(.get, "/fhir/Patient/\(pid)/$summary-count", headers: other)
            XCTAssertEqual(none.json["parameter"]?[0]?["valueInteger"]?.numberText, "0")
            // The registered access decision: a caller without search on Observation is refused before the handler.
            let narrow = try await clientHeaders(server, store, "org-1", .facilitySystem, "system/Patient.rs")
            let refused = try await server.request(.get, "/fhir/Patient/\(pid)/$summary-count", headers: narrow)
            XCTAssertEqual(refused.status, 403, refused.bodyText)
            // Not registered at type level, nor for other types.
            let wrongLevel = try await server.request(.get, "/fhir/Patient/$summary-count", headers: his)
            XCTAssertEqual(wrongLevel.status, 404)
            let wrongType = try await server.request(.get, "/fhir/Observation/x/$summary-count", headers: his)
            XCTAssertEqual(wrongType.status, 404)

            // Listed in the CapabilityStatement, with a generated OperationDefinition.
            let metadata = try await server.request(.get, "/fhir/metadata")
            let patient = metadata.json["rest"]?[0]?["resource"]?.arrayValue?.first { $0["type"]?.stringValue == "Patient" }
            let names = (patient?["operation"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            XCTAssertTrue(names.contains("summary-count"))
            XCTAssertEqual(Set(names), ["validate", "everything", "match", "ihe-pix", "summary-count"])
            let definition = try await server.request(.get, "/fhir/OperationDefinition/Patient-summary-count", headers: his)
            XCTAssertEqual(definition.status, 200, definition.bodyText)
            XCTAssertEqual(definition.json["code"]?.stringValue, "summary-count")
            XCTAssertEqual(definition.json["instance"], .bool(true))
            XCTAssertEqual(definition.json["type"], .bool(false))
            XCTAssertEqual(definition.json["parameter"]?[0]?["name"]?.stringValue, "count")
            // The definitions generated for the platform's own are valid R4 OperationDefinitions.
            for op in registry.operations {
                XCTAssertEqual(ResourceValidator().validate(op.operationDefinition()).map(\.diagnostics), [], op.id)
            }
        }
    }

    func test_anOperationThatChangesData_isNotInvokedWithGet() async throws {
        try await TestServer.run { server, _ in
            let got = try await server.request(.get, "/fhir/Patient/$match")
            XCTAssertEqual(got.status, 405, got.bodyText)
            let unknown = try await server.request(.post, "/fhir/$no-such-operation", "{}")
            XCTAssertEqual(unknown.status, 404)
        }
    }
}
