#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Access
import FHIRModel
import Foundation
import NIOCore
import Store

/// Records who touched which patients' data (全程留痕): writes get their audit event in the same
/// unit, so a write is never stored unaudited; reads, searches and operations append theirs
/// (an audit-only unit, group-committed with others) before the response leaves; refusals too.
public struct AuditTrail: Sendable {
    let store: any ResourceStore
    public var principal: Principal
    public var origin: RequestOrigin
    /// False only for a benchmark's baseline (`serve --dev --no-audit`): nothing is recorded.
    public var enabled: Bool

    public init(store: any ResourceStore, principal: Principal, origin: RequestOrigin = .local, enabled: Bool = true) {
        self.store = store
        self.principal = principal
        self.origin = origin
        self.enabled = enabled
    }

    public func event(_ interaction: Interaction, type: String?, entities: [ResourceKey], patients: [String],
                      query: String? = nil, outcome: AuditOutcome = .success) -> AuditRecord {
        AuditEventBuilder.make(principal: principal, origin: origin, interaction: interaction, type: type, entities: entities,
                               patients: patients, query: query, outcome: outcome, recorded: Self.now())
    }

    /// Appends an event on its own (reads, searches, refusals) and returns once it is stored.
    public func append(_ interaction: Interaction, type: String?, entities: [ResourceKey], patients: [String],
                       query: String? = nil, outcome: AuditOutcome = .success) async throws {
        guard enabled else { return }
        try await store.commitRecords([], audit: [event(interaction, type: type, entities: entities, patients: patients,
                                                        query: query, outcome: outcome)])
    }

    /// Reads and searches: the records shown and the patients they belong to.
    public func appendRead(_ interaction: Interaction, type: String?, records: [ResourceRecord], query: String? = nil) async throws {
        guard enabled else { return }
        try await append(interaction, type: type, entities: records.map(\.key), patients: Self.patients(of: records), query: query)
    }

    /// The patients (`Patient/x`, or a master `Person/x`) whose data the records are: a Patient
    /// or Person itself, else the Patient its top-level `patient` or `subject` references, else the
    /// first Patient it references anywhere.
    public static func patients(of records: [ResourceRecord]) -> [String] {
        if records.count == 1 { return patient(of: records[0].key, content: records[0].content).map { [$0] } ?? [] }
        var seen = Set<String>()
        var out: [String] = []
        for r in records {
            guard let p = patient(of: r.key, content: r.content) else { continue }
            if seen.insert(p).inserted { out.append(p) }
        }
        return out
    }

    static func patient(of key: ResourceKey, content: ByteBuffer?) -> String? {
        if key.type == "Patient" || key.type == "Person" { return key.description }
        guard let content else { return nil }
        // Stored content is compact JSON written by the server, so the top-level members appear
        // exactly as `"patient":{"reference":"` / `"subject":{"reference":"`: a byte scan finds
        // them without parsing the resource (an audited search would otherwise parse every match).
        return content.withUnsafeReadableBytes { bytes in
            for (marker, anchor) in topLevelMarkers {
                guard let start = ByteSearch.find(marker, anchor: anchor, in: bytes) else { continue }
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
                // The first "Patient/" in the reference, at its start or after a "/" (an absolute
                // URL); bytes, not `String.range(of:)`, which bridges through Foundation.
                let reference = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                guard let idStart = ByteSearch.find(patientPrefix, anchor: 0, in: reference) else { continue }
                let at = idStart - patientPrefix.count
                guard at == 0 || reference[at - 1] == UInt8(ascii: "/") else { continue }
                var stop = idStart
                while stop < reference.count, reference[stop] != UInt8(ascii: "/") { stop += 1 }
                return "Patient/" + String(decoding: UnsafeRawBufferPointer(rebasing: reference[idStart..<stop]), as: UTF8.self)
            }
            // Elsewhere (Appointment.participant.actor, Coverage.beneficiary, ...): the first
            // relative reference to a Patient.
            guard let start = ByteSearch.find(anyPatientMarker, anchor: 13, in: bytes) else { return nil }
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "/") { end += 1 }
            return "Patient/" + String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }
    }

    static let patientPrefix = Array("Patient/".utf8)

    static let patientMarker = Array(#""patient":{"reference":""#.utf8)
    static let subjectMarker = Array(#""subject":{"reference":""#.utf8)
    /// In the order they are tried, each with the offset of a byte of it that is rare in JSON.
    static let topLevelMarkers = [(patientMarker, 1), (subjectMarker, 4)]
    static let anyPatientMarker = Array(#""reference":"Patient/"#.utf8)

    /// The patients a unit's writes belong to (their compartments).
    static func patients(of writes: [PreparedWrite]) -> [String] {
        var seen = Set<String>()
        return writes.compactMap { w -> String? in
            if w.key.type == "Person" { return w.key.description }
            return WritePlanner.compartment(of: w).map { "Patient/" + $0 }
        }.filter { seen.insert($0).inserted }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }
}
