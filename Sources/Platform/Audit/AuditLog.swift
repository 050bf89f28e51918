import Access
import FHIRModel
import NIOCore
import Store

/// Reading the audit trail through FHIR: `AuditEvent/{id}` and `AuditEvent?patient=...` (who
/// accessed a resident's records), newest first, paged by chain position. Reading it is itself
/// audited.
public struct AuditLog: Sendable {
    public let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    public struct Page: Sendable {
        public let events: [ByteBuffer]
        /// The `_before` cursor of the next page.
        public let next: Int?
    }

    public func read(_ id: String) async throws -> ByteBuffer {
        try await service.authorize(.read, "AuditEvent")
        guard let seq = Int(id), let event = try await service.store.auditEvent(seq: seq) else {
            throw FHIRError.notFound(ResourceKey("AuditEvent", id))
        }
        if AccessPolicy().isResident(service.principal) {
            let own = try await service.patientDataGate().residentOwn()
            let about = (try? JSONParser.parse(event.content))?["p"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard !own.isDisjoint(with: about) else { throw FHIRError.notFound(ResourceKey("AuditEvent", id)) }
        }
        try await service.trail.append(.read, type: "AuditEvent", entities: [ResourceKey("AuditEvent", id)], patients: [])
        return Self.resource(event, redacted: redacted)
    }

    /// `patient` (repeatable, `Patient/x`, `x` or a comma list), `_count`, `_before`.
    public func search(_ parameters: [(String, String)]) async throws -> Page {
        try await service.authorize(.search, "AuditEvent")
        var patients: [String] = []
        var count = 50
        var before: Int?
        for (name, value) in parameters {
            switch name {
            case "patient", "entity", "patient:Patient":
                patients += value.split(separator: ",").map { $0.contains("/") ? String($0) : "Patient/" + $0 }
            case "_count":
                guard let n = Int(value), n >= 0 else { throw FHIRError(.invalid, code: "value", "Invalid _count '\(value)'", at: "_count") }
                count = min(n, 1000)
            case "_before":
                guard let n = Int(value), n >= 0 else {
                    throw FHIRError(.invalid, code: "value", "Invalid _before '\(value)': the chain position from a next link", at: "_before")
                }
                before = n
            case "_format":
                continue
            case "_sort" where value == "-date":
                continue
            default:
                throw FHIRError(.invalid, code: "not-supported", "AuditEvent search supports patient, entity, _count and _sort=-date; not '\(name)'", at: name)
            }
        }
        // A resident sees who touched their own records, and only theirs.
        if AccessPolicy().isResident(service.principal) {
            let own = try await service.patientDataGate().residentOwn()
            if patients.isEmpty { patients = own.sorted() }
            guard Set(patients).isSubset(of: own) else {
                throw FHIRError(.forbidden, code: "forbidden", "A resident sees the audit trail of their own records only", at: "patient")
            }
        }
        let events = try await service.store.auditEvents(patients: patients, before: before, limit: count + 1)
        let page = Array(events.prefix(count))
        try await service.trail.append(.search, type: "AuditEvent", entities: [], patients: patients,
                                       query: parameters.map { "\($0.0)=\($0.1)" }.joined(separator: "&"))
        return Page(events: page.map { Self.resource($0, redacted: redacted) }, next: events.count > count ? page.last?.seq : nil)
    }

    /// Operators read the trail without its clinical content (the queries' text, break-the-glass reasons).
    var redacted: Bool { service.principal.role == .platformOperator }

    /// The stored event as a FHIR AuditEvent.
    static func resource(_ event: StoredAuditEvent, redacted: Bool) -> ByteBuffer {
        ByteBuffer(bytes: JSONWriter.bytes(AuditEventBuilder.render(event.content, seq: event.seq, hash: event.hash, redacted: redacted)))
    }
}
