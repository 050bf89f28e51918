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

    /// The platform's own extension for values it encrypts at rest is not taken from clients: a
    /// sent token would be opened for readers in place of what was checked (ADR 012, 027).
    func test_theEncryptedValueExtensionIsRefused() throws {
        let url = ResourceValidator.encryptedValueURL
        XCTAssertEqual(try locations(#"{"resourceType":"Binary","contentType":"application/pdf","_data":{"extension":[{"url":"\#(url)","valueString":"k1:AAAA"}]}}"#),
                       ["Binary._data"])
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","_value":{"extension":[{"url":"\#(url)","valueString":"k1:AAAA"}]}}]}"#),
                       ["Patient.identifier[0]._value"])
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
        // Line breaks inside (as MIME writes base64) are allowed; letters after padding, or a stray byte, are not.
        XCTAssertNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVs\r\nbG8h")))
        XCTAssertNotNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVsbA==bG8h")))
        XCTAssertNotNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVs-G8h")))
        XCTAssertNotNil(FHIRPrimitive.base64Binary.problem(with: .string("aGVsbG8h=")))
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

    // Required bindings (R4 terminologies.html#required).

    func issues(_ text: String) throws -> [Issue] { validator.validate(try JSONParser.parse(text)) }

    func test_codeUnderRequiredBinding_mustComeFromItsValueSet() throws {
        // "completed" is an STU3 encounter status; R4 says "finished".
        let stu3 = try issues(#"{"resourceType":"Encounter","status":"completed","class":{"code":"AMB"}}"#)
        XCTAssertEqual(stu3.flatMap(\.expression), ["Encounter.status"])
        XCTAssertEqual(stu3.first?.code, "code-invalid")
        XCTAssertTrue(stu3.first?.diagnostics.contains("finished") ?? false, "the message lists the allowed codes")
        XCTAssertEqual(try locations(#"{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"}}"#), [])
        // Codes of a repeating element, of a data type (ContactPoint.system) and inside a contained resource.
        let patient = """
        {"resourceType":"Patient","gender":"F","telecom":[{"system":"phone","value":"1"},{"system":"wechat","value":"2"}],
         "contained":[{"resourceType":"AllergyIntolerance","patient":{"reference":"#"},"category":["food","drug"]}]}
        """
        XCTAssertEqual(try locations(patient).sorted(),
                       ["Patient.contained[0].category[1]", "Patient.gender", "Patient.telecom[1].system"])
    }

    func test_extensionInPlaceOfARequiredCode_isRefused() throws {
        // The validator suite's allergy.json: a data-absent-reason where a required code should be.
        let allergy = """
        {"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/a"},
         "_category":[{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}]}
        """
        XCTAssertEqual(try locations(allergy), ["AllergyIntolerance.category[0]"])
        let gender = """
        {"resourceType":"Patient","_gender":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}
        """
        XCTAssertEqual(try locations(gender), ["Patient.gender"])
        // An extension beside a code is fine.
        XCTAssertEqual(try locations(#"{"resourceType":"Patient","gender":"male","_gender":{"extension":[{"url":"http://e.org/x","valueString":"男"}]}}"#), [])
    }

    func test_codeableConceptUnderRequiredBinding_needsACodingOfTheValueSet() throws {
        let clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
        func condition(_ status: String) -> String {
            #"{"resourceType":"Condition","subject":{"reference":"Patient/a"},"clinicalStatus":\#(status)}"#
        }
        // A local coding beside the standard one is allowed.
        XCTAssertEqual(try locations(condition(#"{"coding":[{"system":"http://his.example/status","code":"A"},{"system":"\#(clinical)","code":"active"}]}"#)), [])
        XCTAssertEqual(try locations(condition(#"{"coding":[{"system":"\#(clinical)","code":"cured"}]}"#)),
                       ["Condition.clinicalStatus.coding[0].code"])
        XCTAssertEqual(try locations(condition(#"{"coding":[{"system":"http://his.example/status","code":"A"}]}"#)),
                       ["Condition.clinicalStatus"])
        XCTAssertEqual(try locations(condition(#"{"text":"active"}"#)), ["Condition.clinicalStatus"])
    }

    func test_extensibleAndPreferredBindings_areWarningsWhenAdviceIsAsked() throws {
        let categories = "http://terminology.hl7.org/CodeSystem/observation-category"
        func observation(_ category: String) -> String {
            #"{"resourceType":"Observation","status":"final","code":{"text":"x"},"category":[\#(category)]}"#
        }
        let advising = ResourceValidator(advice: true)
        func warnings(_ text: String) throws -> [String] {
            let found = advising.validate(try JSONParser.parse(text))
            XCTAssertTrue(found.allSatisfy { $0.severity == .warning }, "\(found)")
            return found.flatMap(\.expression)
        }
        // Observation.category is preferred to observation-category.
        XCTAssertEqual(try warnings(observation(#"{"coding":[{"system":"\#(categories)","code":"laboratory"}]}"#)), [])
        XCTAssertEqual(try warnings(observation(#"{"coding":[{"system":"\#(categories)","code":"lab"}]}"#)),
                       ["Observation.category[0].coding[0].code"])
        XCTAssertEqual(try warnings(observation(#"{"coding":[{"system":"http://his.example/cat","code":"LIS"}]}"#)), ["Observation.category[0]"])
        XCTAssertEqual(try warnings(observation(#"{"text":"检验"}"#)), [], "text alone is what a preferred binding allows")
        // Patient.maritalStatus is extensible; a write does not look at it.
        let patient = #"{"resourceType":"Patient","maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"Q"}]}}"#
        XCTAssertEqual(try warnings(patient), ["Patient.maritalStatus.coding[0].code"])
        XCTAssertEqual(try locations(patient), [])
    }
}

