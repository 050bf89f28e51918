import FHIRModel
import Store

/// `Patient/{id}/$everything` and `Patient/$everything` (http://hl7.org/fhir/R4/patient-operation-everything.html): the
/// patient, everything in its compartment, and the Practitioner, Organization, Location and
/// Medication resources those reference. Paged in storage order, so memory is bounded by the
/// page size, not by the patient's record.
public struct PatientEverything: Sendable {
    public let store: any ResourceStore
    static let supportingTypes = ["Practitioner", "PractitionerRole", "Organization", "Location", "Medication"]

    public init(store: any ResourceStore) {
        self.store = store
    }

    public struct Page: Sendable {
        public let records: [ResourceRecord]
        public let total: Int?
        public let next: PageRequest?
    }

    /// One page; `patientID` nil is the type-level operation (`Patient/$everything`: all patients).
    public func run(patientID: String?, types: [String]?, since: Int64?, page: PageRequest) async throws -> Page {
        let patient = ResourceKey("Patient", patientID ?? "")
        if patientID != nil {
            guard let record = try await store.read(patient), !record.deleted else { throw FHIRError.notFound(patient) }
        }
        return try await run(patients: [patient], types: types, since: since, page: page)
    }

    /// One page of the records of several patients (a resident's Patients at every facility).
    public func run(patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest) async throws -> Page {
        if let types {
            for t in types where !FHIRSchema.r4.isResourceType(t) {
                throw FHIRError(400, code: "value", "Unknown resource type '\(t)' in _type", at: "_type")
            }
        }
        let result = try await store.compartment(of: patients, types: types, since: since, page: page)
        var seen = Set(result.records.map(\.key))
        var records = result.records
        let wanted = Set(Self.supportingTypes.filter { types == nil || types!.contains($0) })
        if !wanted.isEmpty {
            // One pass over the page's references, kept to the supporting types.
            let found = try await store.include(from: result.records.map(\.key), parameter: nil, targetType: nil)
            records += found.filter { wanted.contains($0.key.type) && seen.insert($0.key).inserted }
        }
        return Page(records: records, total: result.total, next: result.next)
    }
}
