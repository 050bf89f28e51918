import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// Loads CodeSystems, ValueSets and ConceptMaps (alone or in Bundles) through the write pipeline,
/// idempotently by `url` + `version`: a resource already stored with the same content is left
/// alone, a changed one updates the stored resource of that url and version, a new one is created
/// (`huitong terminology load`).
public struct TerminologyLoader: Sendable {
    public static let types: Set<String> = ["CodeSystem", "ValueSet", "ConceptMap"]
    public let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    public enum Disposition: String, Sendable { case created, updated, unchanged }

    public struct Outcome: Sendable {
        public let type: String
        public let url: String
        public let version: String?
        public let disposition: Disposition
        /// Concepts of a CodeSystem, elements of a ConceptMap's groups (0 for a ValueSet).
        public let size: Int
        public var description: String {
            "\(disposition.rawValue) \(type) \(url)\(version.map { "|" + $0 } ?? "")" + (size > 0 ? " (\(size))" : "")
        }
    }

    /// The terminology resources of a file's JSON: a resource, or a Bundle's entries (others refused).
    public static func resources(in json: JSON) throws(FHIRError) -> [JSONObject] {
        guard case .object(let o) = json, let type = o["resourceType"]?.stringValue else {
            throw FHIRError(.invalid, code: "structure", "Not a FHIR resource")
        }
        if type == "Bundle" {
            var found: [JSONObject] = []
            for (i, entry) in (o["entry"]?.arrayValue ?? []).enumerated() {
                guard case .object(let r)? = entry["resource"] else { continue }
                guard let t = r["resourceType"]?.stringValue, types.contains(t) else {
                    throw FHIRError(.invalid, code: "not-supported", "Bundle.entry[\(i)] is not a CodeSystem, ValueSet or ConceptMap",
                                    at: "Bundle.entry[\(i)].resource")
                }
                found.append(r)
            }
            return found
        }
        guard types.contains(type) else {
            throw FHIRError(.invalid, code: "not-supported", "\(type) is not a terminology resource (CodeSystem, ValueSet, ConceptMap)")
        }
        return [o]
    }

    public func load(_ resource: JSONObject) async throws -> Outcome {
        let type = resource["resourceType"]?.stringValue ?? ""
        guard Self.types.contains(type) else {
            throw FHIRError(.invalid, code: "not-supported", "\(type) is not a terminology resource")
        }
        guard let url = resource["url"]?.stringValue, !url.isEmpty else {
            throw FHIRError(.invalid, code: "required", "A \(type) is loaded by its url, and this one has none", at: "\(type).url")
        }
        let version = resource["version"]?.stringValue
        var query = "url=" + Self.escaped(url)
        query += version.map { "&version=" + Self.escaped($0) } ?? ""
        let size = Self.size(resource, type: type)
        let matches = try await service.store.search(try SearchQueryParser().parse(type: type, query: query), limit: 3)
        let sameVersion = try await service.store.read(keys: matches).values.filter { record in
            // Without a version, the one stored without a version.
            guard let content = record.content, case .object(let o) = try? JSONParser.parse(Array(content.readableBytesView)) else { return false }
            return version != nil || o["version"] == nil
        }
        guard sameVersion.count <= 1 else {
            throw FHIRError(.conflict, code: "duplicate", "\(sameVersion.count) stored \(type)s have url \(url)\(version.map { " and version " + $0 } ?? ""); keep one")
        }
        var body = resource
        if let existing = sameVersion.first {
            let stored = try service.pipeline.parse(Array(existing.content!.readableBytesView)).objectValue ?? JSONObject()
            if Self.comparable(stored) == Self.comparable(resource) {
                return Outcome(type: type, url: url, version: version, disposition: .unchanged, size: size)
            }
            body["id"] = .string(existing.key.id)
            _ = try await service.update(type, existing.key.id, body: .object(body))
            return Outcome(type: type, url: url, version: version, disposition: .updated, size: size)
        }
        if let id = body["id"]?.stringValue {
            // The file's id, unless a resource of another url has it.
            if let taken = try await service.store.read(ResourceKey(type, id)), !taken.deleted {
                body["id"] = nil
            } else {
                _ = try await service.update(type, id, body: .object(body))
                return Outcome(type: type, url: url, version: version, disposition: .created, size: size)
            }
        }
        _ = try await service.create(type, body: .object(body))
        return Outcome(type: type, url: url, version: version, disposition: .created, size: size)
    }

    /// The content that decides whether a load changes anything (not id or meta).
    static func comparable(_ o: JSONObject) -> JSONObject {
        var c = o
        c["id"] = nil
        c["meta"] = nil
        return c
    }

    static func size(_ resource: JSONObject, type: String) -> Int {
        switch type {
        case "CodeSystem":
            func count(_ list: [JSON]) -> Int { list.reduce(0) { $0 + 1 + count($1["concept"]?.arrayValue ?? []) } }
            return count(resource["concept"]?.arrayValue ?? [])
        case "ConceptMap":
            return (resource["group"]?.arrayValue ?? []).reduce(0) { $0 + ($1["element"]?.arrayValue?.count ?? 0) }
        default:
            return 0
        }
    }

    static func escaped(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: CharacterSet.urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+,$|\\"))) ?? value
    }
}
