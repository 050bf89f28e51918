import Access
import FHIRModel
import Foundation
import Identity
import Store

/// The one path every write takes, whatever the channel (REST, transaction Bundle,
/// bulk import, later HL7 v2): parse → validate → index extraction → template → store.
public struct IngestPipeline: Sendable {
    public let validator: ResourceValidator
    public let extractor: IndexExtractor
    public let maxBodyBytes: Int
    /// Records coded in a sensitive category get its security label on every write.
    public let sensitive: SensitiveCategories

    public init(maxBodyBytes: Int = 20 * 1024 * 1024, sensitive: SensitiveCategories = .defaults) {
        self.validator = ResourceValidator()
        self.extractor = IndexExtractor()
        self.maxBodyBytes = maxBodyBytes
        self.sensitive = sensitive
    }

    /// Parses a request body as JSON, mapping syntax errors to a 400 OperationOutcome.
    public func parse(_ bytes: some Collection<UInt8>) throws(FHIRError) -> JSON {
        guard bytes.count <= maxBodyBytes else {
            throw FHIRError(413, code: "too-costly", "Request body of \(bytes.count) bytes exceeds the limit of \(maxBodyBytes) bytes")
        }
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw FHIRError(400, code: "structure", "Invalid JSON: \(error.description)")
        }
    }

    /// A new server-assigned logical id.
    public static func newID() -> String { UUID().uuidString.lowercased() }

    /// Validates a resource and prepares it for the store.
    /// - Parameter location: prefix for issue locations inside a Bundle (`Bundle.entry[3].resource`).
    public func prepare(_ resource: JSON, type: String, id: String, method: String, ifMatch: Int? = nil,
                        mustNotExist: Bool = false, location: String? = nil) throws(FHIRError) -> PreparedWrite {
        try Self.checkWritable(type)
        guard case .object(let object) = resource else {
            throw FHIRError(400, code: "structure", "A resource must be a JSON object", at: location)
        }
        guard let actualType = object["resourceType"]?.stringValue else {
            throw FHIRError(400, code: "structure", "Missing 'resourceType'", at: location)
        }
        guard actualType == type else {
            throw FHIRError(400, code: "invalid", "Resource type '\(actualType)' does not match the endpoint type '\(type)'", at: location)
        }
        let issues = validator.validate(resource)
        if !issues.isEmpty {
            let relocated = location.map { prefix in issues.map { relocate($0, type: type, to: prefix) } } ?? issues
            throw FHIRError(400, relocated)
        }
        let labelled = sensitive.labelled(object)
        return PreparedWrite(key: ResourceKey(type, id), action: method == "POST" ? .create : .update, method: method,
                             template: ResourceTemplate(resource: labelled, type: type, id: id),
                             index: indexEntries(for: labelled, type: type),
                             ifMatch: ifMatch, mustNotExist: mustNotExist, resource: labelled)
    }

    /// A resource the platform built itself from validated input (the master index's Persons and
    /// review Tasks): prepared like any other write, without validating it again.
    public func prepareGenerated(_ object: JSONObject, type: String, id: String, method: String, ifMatch: Int?) -> PreparedWrite {
        PreparedWrite(key: ResourceKey(type, id), action: method == "POST" ? .create : .update, method: method,
                      template: ResourceTemplate(resource: object, type: type, id: id),
                      index: indexEntries(for: object, type: type), ifMatch: ifMatch, resource: object)
    }

    /// The search index rows of a resource: its search parameters, and for a Patient the master
    /// index's blocking keys (`huitong reindex` uses the same).
    public func indexEntries(for object: JSONObject, type: String) -> [IndexEntry] {
        let entries = extractor.entries(for: object, type: type)
        guard type == "Patient" else { return entries }
        return entries + BlockingKeys.indexEntries(PatientFeatures(patient: object))
    }

    /// A deletion, prepared.
    /// Types only the server writes: `AuditEvent`s are recorded by the audit trail, never sent.
    public static func checkWritable(_ type: String) throws(FHIRError) {
        if type == "AuditEvent" {
            throw FHIRError(405, code: "not-supported", "AuditEvents are recorded by the server; they cannot be created, changed or deleted")
        }
    }

    public func prepareDelete(_ key: ResourceKey, ifMatch: Int? = nil) -> PreparedWrite {
        PreparedWrite(key: key, action: .delete, method: "DELETE", template: nil, index: [], ifMatch: ifMatch)
    }

    private func relocate(_ issue: Issue, type: String, to prefix: String) -> Issue {
        guard let e = issue.expression.first else { return Issue(issue.severity, code: issue.code, issue.diagnostics, at: prefix) }
        let rest = e.hasPrefix(type) ? String(e.dropFirst(type.count)) : "." + e
        return Issue(issue.severity, code: issue.code, issue.diagnostics, at: prefix + rest)
    }
}
