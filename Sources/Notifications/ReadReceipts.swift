import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// A resident marks a message to them read (提醒已读, ADR 023): an update of a `Communication`
/// addressed to its own subject (a reminder to the resident, not one about them to a doctor) that
/// changes only `status` and `received`. Anything else a resident sends as a Communication update
/// is refused.
public struct ReadReceipts: WriteEnricher {
    let store: any ResourceStore
    /// The stored version is compared in clear (its identifiers and documents opened, ADR 012, 027).
    var protection: IdentifierProtection? = nil
    static let mayChange: Set<String> = ["status", "received", "meta", "text"]

    public init(store: any ResourceStore, protection: IdentifierProtection? = nil) {
        self.store = store
        self.protection = protection
    }

    /// A Communication's stored version only.
    public func reads(preparing type: String) -> Set<String>? { [] }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        guard type == "Communication", AccessPolicy().isResident(principal) else { return resource }
        let refusal = FHIRError(.forbidden, code: "forbidden", "A resident marks a message to them read (status, received), nothing else")
        guard let id = resource["id"]?.stringValue, let stored = try await store.read(ResourceKey("Communication", id)), !stored.deleted,
              let old = IdentifierProtection.parse(stored.content, revealing: protection),
              let subject = old["subject"]?["reference"]?.stringValue,
              (old["recipient"]?.arrayValue ?? []).contains(where: { $0["reference"]?.stringValue == subject }) else { throw refusal }
        func rest(_ o: JSONObject) -> JSON {
            var o = o
            for key in Self.mayChange { o[key] = nil }
            return Self.canonical(.object(o))
        }
        guard rest(old) == rest(resource), ["in-progress", "completed"].contains(resource["status"]?.stringValue ?? "") else { throw refusal }
        return resource
    }

    /// The same JSON with every object's members in name order (so that two clients' orders compare equal).
    static func canonical(_ value: JSON) -> JSON {
        switch value {
        case .object(let o):
            return .object(JSONObject(o.map { ($0.key, canonical($0.value)) }.sorted { $0.0 < $1.0 }))
        case .array(let a):
            return .array(a.map(canonical))
        default:
            return value
        }
    }
}
