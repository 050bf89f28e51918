import FHIRModel
import NIOCore
@testable import Platform
import Store
import XCTest

/// Which resident a read's audit event names: found by a byte scan of the stored JSON.
final class AuditPatientScanTests: XCTestCase {
    func patient(_ type: String, _ json: String) -> String? {
        AuditTrail.patient(of: ResourceKey(type, "x"), content: ByteBuffer(string: json))
    }

    func test_thePatientOfAStoredRecord() {
        XCTAssertEqual(patient("Observation", #"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#), "Patient/p1")
        XCTAssertEqual(patient("Observation", #"{"resourceType":"Observation","subject":{"reference":"https://hie.example/fhir/Patient/p2"}}"#),
                       "Patient/p2", "an absolute reference")
        XCTAssertEqual(patient("Encounter", #"{"resourceType":"Encounter","patient":{"reference":"Patient/p3/_history/2"}}"#),
                       "Patient/p3", "a versioned reference")
        XCTAssertNil(patient("Observation", #"{"resourceType":"Observation","subject":{"reference":"Group/g1"}}"#))
        XCTAssertNil(patient("Observation", #"{"resourceType":"Observation","subject":{"reference":"MyPatient/z"}}"#),
                     "Patient/ inside another word is not a Patient")
        XCTAssertEqual(patient("Appointment", #"{"resourceType":"Appointment","participant":[{"actor":{"reference":"Practitioner/d"}},{"actor":{"reference":"Patient/p4"}}]}"#),
                       "Patient/p4", "elsewhere in the resource")
        XCTAssertEqual(patient("Patient", "{}"), "Patient/x")
        XCTAssertNil(patient("Organization", #"{"resourceType":"Organization","name":"县医院"}"#))
    }
}
