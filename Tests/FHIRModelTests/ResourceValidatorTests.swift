import FHIRModel
import XCTest

final class ResourceValidatorTests: XCTestCase {
    let validator = ResourceValidator()

    func locations(_ text: String) throws -> [String] {
        validator.validate(try JSONParser.parse(text)).flatMap(\.expression)
    }

    func test_validPatientWithPrimitiveExtensionsAndContained_passes() throws {
        let patient = """
        {"resourceType":"Patient","id":"p-1","meta":{"profile":["http://example.org/p"]},
         "text":{"status":"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">张伟</div>"},
         "identifier":[{"system":"urn:oid:2.16.156.10011.1.1","value":"110101199003071234"}],
         "name":[{"family":"张","given":["伟",null],"_given":[null,{"extension":[{"url":"http://e.org/x","valueString":"a"}]}]}],
         "birthDate":"1990-03-07","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1990-03-07T08:30:00+08:00"}]},
         "deceasedBoolean":false,"multipleBirthInteger":2,
         "contained":[{"resourceType":"Organization","id":"o1","name":"社区卫生服务中心"}],
         "managingOrganization":{"reference":"#o1"}}
        """
        XCTAssertEqual(try locations(patient), [])
    }

    func test_everyProblemIsReportedWithItsPath() throws {
        let obs = """
        {"resourceType":"Observation","id":"bad id!","status":"final","code":{"coding":[{"system":"http://loinc.org","code":" 8480-6"}]},
         "valueQuantity":{"value":"5.4"},"valueString":"also","effectiveDateTime":"2024-13-01","issued":"2024-01-01",
         "component":[{"valueInteger":1.5}],"note":[],"subject":{"reference":"Patient/"},"extra":1}
        """
        XCTAssertEqual(Set(try locations(obs)), [
            "Observation.id", "Observation.code.coding[0].code", "Observation.valueQuantity.value", "Observation.valueString",
            "Observation.effectiveDateTime", "Observation.issued", "Observation.component[0].valueInteger",
            "Observation.component[0].code", "Observation.note", "Observation.subject.reference", "Observation.extra",
        ])
    }

    func test_unknownAndAbstractResourceTypes_areRejected() throws {
        XCTAssertEqual(try locations(#"{"resourceType":"Patientx"}"#), ["Patientx"])
        XCTAssertEqual(try locations(#"{"resourceType":"DomainResource"}"#), ["DomainResource"])
        XCTAssertFalse(validator.validate(try JSONParser.parse(#"{"name":"x"}"#)).isEmpty)
    }

    func test_cardinalityAndNulls() throws {
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","name":{"family":"x"}}"#), ["Patient.name"])
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","gender":["male"]}"#), ["Patient.gender"])
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","gender":null}"#), ["Patient.gender"])
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","name":[{}]}"#), ["Patient.name[0]"])
    }

    func test_primitiveExtensionContentIsValidated_andBOMIsAccepted() throws {
        XCTAssertEqual(Set(try locations(#"{"resourceType":"Patient","_birthDate":{"extension":[{"valueString":"x"}],"colour":1}}"#)),
                       ["Patient._birthDate.extension[0].url", "Patient._birthDate.colour"])
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(#"{"resourceType":"Patient"}"#.utf8)
        XCTAssertNoThrow(try JSONParser.parse(bom))
    }

    func test_nestedResourcesInBundleAreValidated() throws {
        let bundle = """
        {"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","birthDate":"1990-02-30"}}]}
        """
        XCTAssertEqual(try locations(bundle), ["Bundle.entry[0].resource.birthDate"])
    }

    func test_primitiveFormats() {
        XCTAssertNil(FHIRPrimitive.oid.problem(with: .string("urn:oid:2.16.156.10011")))
        XCTAssertNotNil(FHIRPrimitive.oid.problem(with: .string("2.16.156")))
        XCTAssertNil(FHIRPrimitive.uuid.problem(with: .string("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")))
        XCTAssertNotNil(FHIRPrimitive.positiveInt.problem(with: .number("0")))
        XCTAssertNotNil(FHIRPrimitive.integer.problem(with: .number("2147483648")))
        XCTAssertNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVsbG8=")))
        XCTAssertNotNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVsbG8")))
        XCTAssertNotNil(FHIRPrimitive.string.problem(with: .string("")))
        XCTAssertNotNil(FHIRPrimitive.string.problem(with: .string("bell\u{7}")))
        XCTAssertNotNil(FHIRPrimitive.uri.problem(with: .string("has space")))
        XCTAssertNil(FHIRPrimitive.time.problem(with: .string("23:59:60")))
        XCTAssertNotNil(FHIRPrimitive.boolean.problem(with: .string("true")))
    }

    func test_schemaKnowsAllR4ResourceTypes() {
        XCTAssertEqual(FHIRSchema.r4.resourceTypeNames.count, 146)
        for t in ["Patient", "Claim", "ExplanationOfBenefit", "SupplyDelivery", "Device", "MedicationAdministration", "AuditEvent", "Consent"] {
            XCTAssertTrue(FHIRSchema.r4.isResourceType(t), t)
        }
    }
}
