import Access
import FHIRModel
import Store

/// `Patient/{id}/$everything` and `Patient/$everything` (http://hl7.org/fhir/R4/patient-operation-everything.html): the
/// patient, everything in its compartment, and the Practitioner, Organization, Location and
/// Medication resources those reference. Paged in storage order, so memory is bounded by the
/// page size, not by the patient's record.
/// Only types the principal may read are searched or included, so neither entries nor the
/// total show what it may not see.
public struct PatientEverything: Sendable {
    public let service: FHIRService
    var store: any ResourceStore { service.store }
    static let supportingTypes = ["Practitioner", "PractitionerRole", "Organization", "Location", "Medication"]

    public init(service: FHIRService) {
        self.service = service
    }

    public struct Page: Sendable {
        public let records: [ResourceRecord]
        public let total: Int?
        public let next: PageRequest?
    }

    /// One page; `patientID` nil is the type-level operation (`Patient/$everything`: all patients).
    public func run(patientID: String?, types: [String]?, since: Int64?, page: PageRequest) async throws -> Page {
        try await service.authorize(.operation("everything"), "Patient")
        let patient = ResourceKey("Patient", patientID ?? "")
        if patientID != nil {
            guard let record = try await store.read(patient), !record.deleted else { throw FHIRError.notFound(patient) }
        }
        return try await collect(patients: [patient], types: types, since: since, page: page)
    }

    /// One page of the records of several patients (a resident's Patients at every facility),
    /// as `$everything` on a master `Person`.
    public func run(person: String, patients: [ResourceKey], types: [String]?, since: Int64?, page: PageRequest) async throws -> Page {
        try await service.authorize(.operation("everything"), "Person")
        return try await collect(patients: patients + [ResourceKey("Person", person)], types: types, since: since, page: page)
    }

    private func collect(patients: [ResourceKey], types requested: [String]?, since: Int64?, page: PageRequest) async throws -> Page {
        if let requested {
            for t in requested where !FHIRSchema.r4.isResourceType(t) {
                throw FHIRError(.invalid, code: "value", "Unknown resource type '\(t)' in _type", at: "_type")
            }
        }
        // A principal that reads every type needs no filter; others get the types they may read.
        var types = requested
        if !service.principal.permissions(on: "*").contains(.read) {
            types = (requested ?? FHIRSchema.r4.resourceTypeNames).filter(service.mayRead)
            if types!.isEmpty { return Page(records: [], total: 0, next: nil) }
        }
        // Only rows the principal may read are paged, counted and included (ADR 016).
        let scope = try await service.readScope()
        let result = try await store.compartment(of: patients, types: types, since: since, page: page, scope: scope)
        var seen = Set(result.records.map(\.key))
        var records = result.records
        let wanted = Set(Self.supportingTypes.filter { (types == nil || types!.contains($0)) && service.mayRead($0) })
        if !wanted.isEmpty {
            // One pass over the page's references, kept to the supporting types.
            let found = try await store.include(from: result.records.map(\.key), parameter: nil, targetType: nil, scope: scope)
            records += found.filter { wanted.contains($0.key.type) && seen.insert($0.key).inserted }
        }
        try await service.trail.appendRead(.operation("everything"), type: patients.first?.type, records: records)
        return Page(records: service.presenter.records(records), total: result.total, next: result.next)
    }
}
