import Access
import FHIRModel
import Identity
import Store

/// Who a record of patient data is about, when its writer names the patient by an identifier
/// only (a logical reference: `"subject": {"identifier": {...}}`): the platform finds the Patient
/// and adds the literal reference beside the identifier, so that the record is attributed to the
/// resident — found under their Patient, counted in their compartment, decided on as theirs
/// (ADR 016). The writer's own Patient with that identifier is taken first; else the one Patient
/// (or several of one resident) of another facility that the writer may read (a resident it
/// treats; a Patient it may not read is never named, not even by its id). An identifier that names nobody, or
/// several residents, leaves the reference as it was: the record is then nobody's, which only its
/// writer reads, and a sensitive one is refused (`checkAttributed`).
extension FHIRService {
    /// The top-level members whose reference makes a record part of a patient's compartment.
    static let patientMembers = ["subject", "patient"]

    func attributed(_ resource: JSON, type: String) async throws -> JSON {
        guard R4Compartments.patientTypes.contains(type), type != "Patient", case .object(var object) = resource else { return resource }
        var changed = false
        for member in Self.patientMembers {
            guard case .object(var reference)? = object[member], reference["reference"] == nil,
                  let identifier = reference["identifier"], let patient = try await patient(identifiedBy: identifier) else { continue }
            reference["reference"] = .string(patient.description)
            object[member] = .object(reference)
            changed = true
        }
        return changed ? .object(object) : resource
    }

    /// The Patient an identifier names, as described above (nil: none, or not one resident's).
    public func patient(identifiedBy identifier: JSON) async throws -> ResourceKey? {
        guard let system = identifier["system"]?.stringValue, let value = identifier["value"]?.stringValue,
              !system.isEmpty, !value.isEmpty else { return nil }
        // Only Patients the writer may read: resolving a hidden one would tell that it exists.
        let query = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: conditionals.tokenMatches(system + "|" + value))],
                                scope: try await readScope())
        let found = try await store.search(query, limit: 20)
        guard !found.isEmpty else { return nil }
        let records = try await store.read(keys: found)
        if let facility = principal.facility,
           let own = found.first(where: { PatientDataGate.sourceFacility(records[$0]?.content) == facility }) {
            return own
        }
        if found.count == 1 { return found[0] }
        // Several registrations: one resident's (one master Person) or nobody's in particular.
        guard let masterIndex else { return nil }
        var persons = Set<ResourceKey>()
        for key in found {
            guard let person = try await masterIndex.linkedRecords(of: key)?.person else { return nil }
            persons.insert(person)
        }
        return persons.count == 1 ? found[0] : nil
    }
}
