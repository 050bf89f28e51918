/// The HL7 v2 code tables the mapping reads, as FHIR codes (made once, not per message).
enum HL7Tables {
    /// Table 0001 administrative sex → `Patient.gender`.
    static let sex = ["M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"]
    /// Table 0200 name type → `HumanName.use`.
    static let nameUse = ["L": "official", "D": "usual", "A": "nickname", "M": "maiden", "N": "nickname"]
    /// Table 0201 telecommunication use → `ContactPoint.use`.
    static let telecomUse = ["PRN": "home", "WPN": "work", "ORN": "mobile", "PRS": "mobile", "EMR": "home"]
    /// Table 0190 address type → `Address.use`.
    static let addressUse = ["H": "home", "B": "work", "C": "temp"]
    /// Table 0038 order status → `ServiceRequest.status`.
    static let orderStatus = ["CM": "completed", "CA": "revoked", "DC": "revoked", "HD": "on-hold", "IP": "active", "SC": "active"]
    /// Priority (TQ1-9 / OBR-27) → `ServiceRequest.priority`.
    static let priority = ["S": "stat", "A": "asap", "R": "routine", "T": "urgent"]
    /// Table 0271 document completion status → `DocumentReference.docStatus`.
    static let documentStatus = ["AU": "final", "LA": "final", "DO": "preliminary", "IP": "preliminary", "IN": "preliminary",
                                 "PA": "preliminary", "DI": "preliminary"]
    /// Table 0123 result status (OBR-25) → `DiagnosticReport.status`.
    static let reportStatus = ["F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "partial", "I": "registered",
                               "S": "partial", "A": "partial"]
    /// Table 0085 observation result status (OBX-11) → `Observation.status`.
    static let observationStatus = ["F": "final", "P": "preliminary", "C": "corrected", "R": "registered", "D": "entered-in-error",
                                    "X": "cancelled", "W": "entered-in-error", "U": "final", "I": "registered", "S": "preliminary"]
    /// Table 0078 abnormal flags (OBX-8) → display of the v3 ObservationInterpretation code.
    static let interpretationDisplay = ["H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low", "N": "Normal",
                                        "A": "Abnormal", "AA": "Critical abnormal"]
}
