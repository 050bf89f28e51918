import Access
import FHIRModel
import NIOCore
import Foundation
import Store

/// A master Person as one linkage plan sees and changes it.
struct PersonState {
    struct Link {
        var target: ResourceKey
        var assurance: String
        /// The link's own extensions (where a merge brought it from).
        var extensions: [JSON] = []

        /// The Person a merge brought this link from, and the link's assurance before the merge.
        var mergedFrom: (person: ResourceKey, assurance: String)? {
            guard let ext = extensions.first(where: { $0["url"]?.stringValue == PersonState.mergedFromExtension }),
                  let from = ext["valueReference"]?["reference"]?.stringValue.flatMap(ResourceKey.init(reference:)) else { return nil }
            let original = extensions.first { $0["url"]?.stringValue == PersonState.originalAssuranceExtension }?["valueCode"]?.stringValue
            return (from, original ?? "level3")
        }
    }

    let key: ResourceKey
    /// The version read (nil: created by this plan).
    let version: Int?
    /// The content read, kept for members the index does not manage.
    var original: JSONObject
    var links: [Link]
    /// Patients a reviewer declared not to be this person.
    var notMatch: Set<ResourceKey>
    var active: Bool
    var dirty = false
    /// The Patient whose demographics the Person shows (the one linked or updated last).
    var latest: ResourceKey?

    var patientLinks: [ResourceKey] { links.filter { $0.target.type == "Patient" }.map(\.target) }

    func assurance(of patient: ResourceKey) -> String? {
        links.first { $0.target == patient }?.assurance
    }

    init(key: ResourceKey, version: Int?, content: JSONObject) {
        self.key = key
        self.version = version
        original = content
        links = (content["link"]?.arrayValue ?? []).compactMap { link in
            guard let reference = link["target"]?["reference"]?.stringValue, let target = ResourceKey(reference: reference) else { return nil }
            return Link(target: target, assurance: link["assurance"]?.stringValue ?? "level3",
                        extensions: link["extension"]?.arrayValue ?? [])
        }
        notMatch = Set((content["extension"]?.arrayValue ?? []).compactMap { ext -> ResourceKey? in
            guard ext["url"]?.stringValue == PersonState.notMatchExtension else { return nil }
            return ext["valueReference"]?["reference"]?.stringValue.flatMap(ResourceKey.init(reference:))
        })
        active = content["active"]?.boolValue ?? true
    }

    /// On a Person: a Patient a reviewer declared to be someone else (`valueReference`).
    static let notMatchExtension = "https://huitong.health/fhir/StructureDefinition/empi-not-match"
    /// On a Person's link: the Person it was merged from (so a merge can be undone), and the
    /// link's assurance before the merge.
    static let mergedFromExtension = "https://huitong.health/fhir/StructureDefinition/empi-merged-from"
    static let originalAssuranceExtension = "https://huitong.health/fhir/StructureDefinition/empi-original-assurance"
    static let goldenTag = ("https://huitong.health/fhir/CodeSystem/empi", "golden-record")
}

extension ResourceKey {
    /// `Type/id` of a relative reference.
    public init?(reference: String) {
        let parts = reference.split(separator: "/")
        guard parts.count == 2 else { return nil }
        self.init(String(parts[0]), String(parts[1]))
    }

    var reference: String { "\(type)/\(id)" }
}

/// The state one linkage plan works on: Persons and Patients read from the store, and what the
/// plan has changed so far. Lives for one plan, inside one task.
final class LinkageWorkspace {
    let store: any ResourceStore
    var persons: [ResourceKey: PersonState] = [:]
    /// Patient → its Person, for every Patient whose Person has been looked up (absent: unknown).
    var personOfPatient: [ResourceKey: ResourceKey] = [:]
    /// Patients whose Person was looked up and who have none.
    var withoutPerson = Set<ResourceKey>()
    var patients: [ResourceKey: (resource: JSONObject, features: PatientFeatures)] = [:]
    /// Blocking keys of the Patients written earlier in this unit.
    var unitKeys: [String: [ResourceKey]] = [:]
    /// Stored records named so far, by record number (`ResourceStore.keys(ofRecords:)`).
    var recordKeys: [Int: ResourceKey] = [:]

    /// Stored Patients and Persons hold ID and phone numbers encrypted; matching reads them in clear.
    let protection: IdentifierProtection?

    /// Candidates read by earlier plans (nil: read every one).
    let cache: CandidateCache?

    init(store: any ResourceStore, protection: IdentifierProtection?, cache: CandidateCache? = nil) {
        self.store = store
        self.protection = protection
        self.cache = cache
    }

    /// The Person a Patient is linked to, read from the store the first time.
    func person(of patient: ResourceKey) async throws -> ResourceKey? {
        if let p = personOfPatient[patient] { return p }
        if withoutPerson.contains(patient) { return nil }
        try await loadPersons(of: [patient])
        return personOfPatient[patient]
    }

    /// Reads the content and Persons of the given Patients that are not known yet.
    func load(_ keys: Set<ResourceKey>) async throws {
        try await loadPatients(keys)
        try await loadPersons(of: unknownPersons(keys))
    }

    /// Looks up the keys of the given stored records that are not named yet.
    func name(_ records: Set<Int>) async throws {
        let unnamed = records.filter { recordKeys[$0] == nil }
        guard !unnamed.isEmpty else { return }
        recordKeys.merge(try await store.keys(ofRecords: Array(unnamed))) { a, _ in a }
    }

    /// Reads the content of the given Patients that are not known yet (not their Persons).
    func loadPatients(_ keys: Set<ResourceKey>) async throws {
        let wanted = keys.filter { patients[$0] == nil }
        guard !wanted.isEmpty else { return }
        for (key, record) in try await store.read(keys: Array(wanted)) where !record.deleted {
            if let known = cache?.entry(key, version: record.version) {
                patients[key] = (known.resource, known.features)
                continue
            }
            guard let o = IdentifierProtection.parse(record.content, revealing: protection) else { continue }
            let features = PatientFeatures(patient: o)
            patients[key] = (o, features)
            cache?.store(CandidateCache.Entry(version: record.version, resource: o, features: features), for: key)
        }
    }

    /// Those of the given Patients whose Person has not been looked up yet.
    func unknownPersons<S: Sequence<ResourceKey>>(_ keys: S) -> [ResourceKey] {
        keys.filter { personOfPatient[$0] == nil && !withoutPerson.contains($0) }
    }

    /// The Persons of the given Patients; those not stored yet (new registrations) have none.
    func loadPersons(ofWritten patients: [ResourceKey]) async throws {
        let records = try await store.read(keys: patients)
        var stored: [ResourceKey] = []
        for p in patients {
            if let record = records[p], !record.deleted { stored.append(p) } else { withoutPerson.insert(p) }
        }
        try await loadPersons(of: stored)
    }

    func loadPersons(of patients: [ResourceKey]) async throws {
        guard !patients.isEmpty else { return }
        for chunk in stride(from: 0, to: patients.count, by: 200).map({ Array(patients[$0..<min($0 + 200, patients.count)]) }) {
            for record in try await store.resources(of: "Person", referencing: chunk, parameter: "link") {
                guard persons[record.key] == nil, let o = IdentifierProtection.parse(record.content, revealing: protection) else { continue }
                let state = PersonState(key: record.key, version: record.version, content: o)
                persons[record.key] = state
                for p in state.patientLinks where personOfPatient[p] == nil { personOfPatient[p] = record.key }
            }
            for p in chunk where personOfPatient[p] == nil { withoutPerson.insert(p) }
        }
    }

    /// A Person by id, read the first time (nil: no such Person).
    func person(_ key: ResourceKey) async throws -> PersonState? {
        if let state = persons[key] { return state }
        guard let record = try await store.read(keys: [key])[key], !record.deleted,
              let o = IdentifierProtection.parse(record.content, revealing: protection) else { return nil }
        let state = PersonState(key: key, version: record.version, content: o)
        persons[key] = state
        for p in state.patientLinks where personOfPatient[p] == nil { personOfPatient[p] = key }
        return state
    }

    func newPerson() -> ResourceKey {
        let key = ResourceKey("Person", TimeOrderedID.make())
        var state = PersonState(key: key, version: nil, content: JSONObject([("resourceType", .string("Person"))]))
        state.dirty = true
        persons[key] = state
        return key
    }

    func link(_ patient: ResourceKey, to person: ResourceKey, assurance: String, extensions: [JSON] = []) {
        persons[person]?.links.removeAll { $0.target == patient }
        persons[person]?.links.append(.init(target: patient, assurance: assurance, extensions: extensions))
        persons[person]?.active = true
        persons[person]?.dirty = true
        personOfPatient[patient] = person
        withoutPerson.remove(patient)
    }

    /// Removes a Patient's link; a Person left without Patients becomes inactive.
    func unlink(_ patient: ResourceKey, from person: ResourceKey) {
        persons[person]?.links.removeAll { $0.target == patient }
        if persons[person]?.patientLinks.isEmpty == true { persons[person]?.active = false }
        if persons[person]?.latest == patient { persons[person]?.latest = nil }
        persons[person]?.dirty = true
        if personOfPatient[patient] == person { personOfPatient[patient] = nil }
    }

    /// Marks a Person for rewriting, showing `latest`'s demographics.
    func refresh(_ person: ResourceKey, latest: ResourceKey) {
        persons[person]?.latest = latest
        persons[person]?.dirty = true
    }

    /// The Persons this plan changed, as writes: demographics of the latest linked Patient,
    /// identifiers of all of them, the links, the reviewers' not-a-match list.
    func personWrites() async throws -> [IndexWrite] {
        var writes: [IndexWrite] = []
        for (key, state) in persons.sorted(by: { $0.key.id < $1.key.id }) where state.dirty {
            try await loadPatients(Set(state.patientLinks))
            writes.append(IndexWrite(type: "Person", id: key.id, resource: content(of: state), ifMatch: state.version,
                                     method: state.version == nil ? "POST" : "PUT"))
        }
        return writes
    }

    func content(of state: PersonState) -> JSONObject {
        var o = state.original
        o["resourceType"] = .string("Person")
        o["id"] = .string(state.key.id)
        var meta = JSONObject()
        meta["tag"] = .array([.object(JSONObject([("system", .string(PersonState.goldenTag.0)), ("code", .string(PersonState.goldenTag.1))]))])
        o["meta"] = .object(meta)
        let linked = state.patientLinks.compactMap { patients[$0]?.resource }
        // The Person's own e-health cards stay (issued for the Person, not taken from a Patient).
        var identifiers: [JSON] = (state.original["identifier"]?.arrayValue ?? []).filter { (i: JSON) -> Bool in
            i["system"]?.stringValue == IdentifierSystems.healthCard && i["assigner"]?["display"]?.stringValue == IdentifierSystems.cardIssuer
        }
        var seen = Set(identifiers.map { IdentifierSystems.healthCard + "|" + ($0["value"]?.stringValue ?? "") })
        for p in linked {
            for identifier in p["identifier"]?.arrayValue ?? [] {
                let k = (identifier["system"]?.stringValue ?? "") + "|" + (identifier["value"]?.stringValue ?? "")
                if seen.insert(k).inserted { identifiers.append(identifier) }
            }
        }
        o["identifier"] = identifiers.isEmpty ? nil : .array(identifiers)
        if let source = state.latest.flatMap({ patients[$0]?.resource }) ?? linked.last {
            for member in ["name", "telecom", "gender", "birthDate", "address"] { o[member] = source[member] }
        }
        o["active"] = .bool(state.active)
        o["link"] = state.links.isEmpty ? nil : .array(state.links.map { link in
            var l = JSONObject()
            if !link.extensions.isEmpty { l["extension"] = .array(link.extensions) }
            l["target"] = .object(JSONObject([("reference", .string(link.target.reference))]))
            l["assurance"] = .string(link.assurance)
            return .object(l)
        })
        var extensions = (o["extension"]?.arrayValue ?? []).filter { $0["url"]?.stringValue != PersonState.notMatchExtension }
        for p in state.notMatch.sorted(by: { $0.id < $1.id }) {
            extensions.append(.object(JSONObject([("url", .string(PersonState.notMatchExtension)),
                                                  ("valueReference", .object(JSONObject([("reference", .string(p.reference))])))])))
        }
        o["extension"] = extensions.isEmpty ? nil : .array(extensions)
        return o
    }
}
