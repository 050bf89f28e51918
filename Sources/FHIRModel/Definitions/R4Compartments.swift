/// The R4 Patient compartment (compartmentdefinition-patient): the resource types that hold data
/// about a patient. Everything else (Practitioner, Organization, Location, Medication, ...) is
/// shared by every reader.
public enum R4Compartments {
    /// What the access decision treats as a patient's data: the compartment's types, and `Binary`,
    /// which holds a document's bytes and is read under the patient its `securityContext` names.
    public static let patientDataTypes: Set<String> = patientTypes.union(["Binary"])

    public static let patientTypes: Set<String> = [
        "Account", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse", "AuditEvent", "Basic",
        "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim", "ClaimResponse", "ClinicalImpression", "Communication",
        "CommunicationRequest", "Composition", "Condition", "Consent", "Coverage", "CoverageEligibilityRequest",
        "CoverageEligibilityResponse", "DetectedIssue", "DeviceRequest", "DeviceUseStatement", "DiagnosticReport",
        "DocumentManifest", "DocumentReference", "Encounter", "EnrollmentRequest", "EpisodeOfCare", "ExplanationOfBenefit",
        "FamilyMemberHistory", "Flag", "Goal", "Group", "ImagingStudy", "Immunization", "ImmunizationEvaluation",
        "ImmunizationRecommendation", "Invoice", "List", "MeasureReport", "Media", "MedicationAdministration",
        "MedicationDispense", "MedicationRequest", "MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation",
        "Patient", "Person", "Procedure", "Provenance", "QuestionnaireResponse", "RelatedPerson", "RequestGroup",
        "ResearchSubject", "RiskAssessment", "Schedule", "ServiceRequest", "Specimen", "SupplyDelivery", "SupplyRequest",
        "Task", "VisionPrescription",
    ]
}
