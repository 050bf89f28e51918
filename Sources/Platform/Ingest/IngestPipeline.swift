import Access
import FHIRModel
import Foundation
import Identity
import NIOCore
import Store

/// The one path every write takes, whatever the channel (REST, transaction Bundle,
/// bulk import, later HL7 v2): parse → validate → index extraction → template → store.
public struct IngestPipeline: Sendable {
    public let validator: ResourceValidator
    public let extractor: IndexExtractor
    public let maxBodyBytes: Int
    /// Records coded in a sensitive category get its security label on every write.
    public let sensitive: SensitiveCategories
    /// Resident ID and phone numbers are stored encrypted and indexed blinded (nil: in clear, for
    /// tests and tools that do not open a keyring).
    public let protection: IdentifierProtection?

    public init(maxBodyBytes: Int = 20 * 1024 * 1024, sensitive: SensitiveCategories = .defaults,
                protection: IdentifierProtection? = nil) {
        self.validator = ResourceValidator()
        self.extractor = IndexExtractor()
        self.maxBodyBytes = maxBodyBytes
        self.sensitive = sensitive
        self.protection = protection
    }

    /// Parses a request body as JSON, mapping syntax errors to a 400 OperationOutcome.
    public func parse(_ bytes: some Collection<UInt8>) throws(FHIRError) -> JSON {
        guard bytes.count <= maxBodyBytes else {
            throw FHIRError(.tooCostly, code: "too-costly", "Request body of \(bytes.count) bytes exceeds the limit of \(maxBodyBytes) bytes")
        }
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw FHIRError(.invalid, code: "structure", "Invalid JSON: \(error.description)")
        }
    }

    /// A stored resource parsed to be changed (a PATCH): protected values in clear.
    public func parseStored(_ content: ByteBuffer?) throws(FHIRError) -> JSON {
        let parsed = try parse(content.map { Array($0.readableBytesView) } ?? [])
        guard let protection, case .object(let o) = parsed else { return parsed }
        return .object(protection.reveal(o))
    }

    /// A new server-assigned logical id (time-ordered: see `TimeOrderedID`).
    public static func newID() -> String { TimeOrderedID.make() }

    /// Validates a resource and prepares it for the store.
    /// - Parameter location: prefix for issue locations inside a Bundle (`Bundle.entry[3].resource`).
    /// - Parameter newID: the id was made by the server just now (a conditional update that matched
    ///   nothing): no stored version can exist, so the store need not look for one.
    public func prepare(_ resource: JSON, type: String, id: String, method: String, ifMatch: Int? = nil,
                        mustNotExist: Bool = false, newID: Bool = false, location: String? = nil,
                        finished: JSONObject? = nil, streamToken: String? = nil) throws(FHIRError) -> PreparedWrite {
        try Self.checkWritable(type)
        guard case .object(let object) = resource else {
            throw FHIRError(.invalid, code: "structure", "A resource must be a JSON object", at: location)
        }
        guard let actualType = object["resourceType"]?.stringValue else {
            throw FHIRError(.invalid, code: "structure", "Missing 'resourceType'", at: location)
        }
        guard actualType == type else {
            throw FHIRError(.invalid, code: "invalid", "Resource type '\(actualType)' does not match the endpoint type '\(type)'", at: location)
        }
        let issues = validator.validate(resource)
        if !issues.isEmpty {
            let relocated = location.map { prefix in issues.map { relocate($0, type: type, to: prefix) } } ?? issues
            throw FHIRError(.invalid, relocated)
        }
        if type == "CodeSystem", let problem = ConceptIndex.problem(object) {
            throw FHIRError(.tooCostly, code: "too-costly", "\(problem): the platform indexes hierarchies of at most "
                            + "\(ConceptIndex.maxDepth) levels and \(ConceptIndex.maxClosureRows) ancestor pairs", at: location ?? "CodeSystem.concept")
        }
        // `resource` as the platform finished it after validation (`WriteEnricher.finish`).
        let labelled = sensitive.labelled(finished ?? object)
        var (stored, index) = storedForm(labelled, type: type)
        // The document of a Binary kept as a stream (ADR 029): named in the stored form by the
        // token the route that received it made, or the stored version's token a platform-made
        // change keeps (`WriteRequest.keptStream`); nothing a client sends can name a stream.
        var names: String?
        if type == "Binary", let token = streamToken ?? StreamedDocument.pending?.token, stored["data"] == nil, stored["_data"] == nil {
            stored["_data"] = .object(JSONObject([("extension", .array([.object(JSONObject([
                ("url", .string(ResourceValidator.encryptedValueURL)), ("valueString", .string(token))]))]))]))
            // The received stream is still pending: this version's commit settles it.
            if streamToken == nil { names = StreamedDocument.pending?.reference.id }
        }
        var prepared = PreparedWrite(key: ResourceKey(type, id), action: method == "POST" || newID ? .create : .update, method: method,
                                     template: ResourceTemplate(resource: stored, type: type, id: id), index: index,
                                     ifMatch: ifMatch, mustNotExist: mustNotExist, resource: labelled)
        prepared.namesStream = names
        return prepared
    }

    /// A resource the platform built itself from validated input (the master index's Persons and
    /// review Tasks): prepared like any other write, without validating it again.
    public func prepareGenerated(_ object: JSONObject, type: String, id: String, method: String, ifMatch: Int?) -> PreparedWrite {
        let (stored, index) = storedForm(object, type: type)
        return PreparedWrite(key: ResourceKey(type, id), action: method == "POST" ? .create : .update, method: method,
                             template: ResourceTemplate(resource: stored, type: type, id: id), index: index, ifMatch: ifMatch,
                             resource: object)
    }

    /// What is stored of a resource (its protected values encrypted) and its index rows (their
    /// codes blinded), both from the resource in clear.
    func storedForm(_ object: JSONObject, type: String, sealingDocuments: Bool = true) -> (JSONObject, [IndexEntry]) {
        let entries = indexEntries(for: object, type: type)
        guard let protection else { return (object, entries) }
        let (stored, secrets) = protection.protect(object, type: type, sealingDocuments: sealingDocuments)
        return (stored, protection.blindIndex(entries, secrets: secrets))
    }

    /// The index rows of a stored resource (`huitong reindex`, a history version's access): the
    /// same as when it was written, with the labels of the current sensitive categories added
    /// to those it carries (a category or a way of naming one added since: records stored before
    /// are decided by it once reindexed). Labels are only added, as on a write.
    public func indexEntries(forStored object: JSONObject, type: String) -> [IndexEntry] {
        // Documents hold nothing the index needs: neither opened nor sealed again.
        let clear = protection?.reveal(object, documents: false) ?? object
        return storedForm(sensitive.labelled(clear), type: type, sealingDocuments: false).1
    }

    /// The search index rows of a resource in clear: its search parameters, for a CodeSystem its
    /// concepts and their closure, and for a Patient the master index's blocking keys (blinded with the identifier keyring when there is one).
    func indexEntries(for object: JSONObject, type: String) -> [IndexEntry] {
        var entries = extractor.entries(for: object, type: type)
        // What the access decision inside the query reads: labels, treatment, consent (ADR 016).
        entries += AccessIndex.entries(for: object, type: type, index: entries, sensitive: sensitive)
        // A code system's concepts and hierarchy, for the terminology service (ADR 022).
        if type == "CodeSystem" { entries += ConceptIndex.entries(for: object) }
        // A Binary is read under the patient its security context names (`WritePipeline.bound`).
        if type == "Binary", let reference = object["securityContext"]?["reference"]?.stringValue, reference.hasPrefix("Patient/") {
            entries.append(IndexEntry("patient", .reference(type: "Patient", id: String(reference.dropFirst(8)), url: nil)))
        }
        guard type == "Patient" else { return entries }
        return entries + BlockingKeys.indexEntries(BlockingKeys.filed(PatientFeatures(patient: object), protection: protection))
    }

    /// A deletion, prepared.
    /// Types only the server writes: `AuditEvent`s are recorded by the audit trail, never sent.
    public static func checkWritable(_ type: String) throws(FHIRError) {
        if type == "AuditEvent" {
            throw FHIRError(.notAllowed, code: "not-supported", "AuditEvents are recorded by the server; they cannot be created, changed or deleted")
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
