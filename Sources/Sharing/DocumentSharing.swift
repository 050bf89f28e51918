import Access
import Crypto
import FHIRModel
import Foundation
import Identity
import Platform
import Store

/// Document sharing (调阅, IHE MHD on R4): a provide (ITI-65) is a transaction of a `List`
/// (SubmissionSet), `DocumentReference`s and their `Binary`s, written through the one pipeline.
/// This domain adds what MHD leaves to the recipient:
/// - a CDA R2 document (WS/T 500 shared documents) in the attachment (inline, or in the unit's
///   Binary it points at) has its header read: the document id, type, time, author, custodian,
///   confidentiality and title fill what the DocumentReference leaves out, and must agree with
///   what it says; the header's patient identifiers (`recordTarget`) name the subject when the
///   DocumentReference names none, and must not name another resident when it does;
/// - the attachment's size and SHA-1 hash, as MHD asks;
/// - a DocumentReference that `replaces` another supersedes it in the same unit (the replaced
///   one must be the writer's facility's, current, about the same resident).
/// Finding across facilities is a search with `_mdm=true`; the Binary is read under the
/// DocumentReference's patient (`WritePipeline.bound`).
public struct DocumentSharing: WriteEnricher {
    let service: FHIRService

    public init(service: FHIRService) {
        self.service = service
    }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        resource
    }

    /// A DocumentReference reads its Binary, its patient's master identity and the documents it
    /// replaces (anything); nothing else is read.
    public func reads(preparing type: String) -> Set<String>? {
        type == "DocumentReference" ? nil : []
    }

    public func unit(_ requests: [WriteRequest], principal: Principal) async throws -> [WriteRequest] {
        guard requests.contains(where: { $0.key.type == "DocumentReference" && $0.isClient && $0.resource != nil }) else { return requests }
        var out = requests
        let acting = service.acting(as: principal)
        for (i, request) in requests.enumerated() where request.key.type == "DocumentReference" && request.isClient {
            guard case .object(var document)? = request.resource else { continue }
            let at = request.location ?? "DocumentReference"
            guard case .array(var contents)? = document["content"] else { continue }
            var changed = false
            for (c, content) in contents.enumerated() {
                guard case .object(var attachment)? = content["attachment"] else { continue }
                let place = "\(at).content[\(c)].attachment"
                guard let bytes = try bytes(of: attachment, in: requests, at: place) else { continue }
                if attachment["size"] == nil { attachment["size"] = .number(String(bytes.count)) }
                if attachment["hash"] == nil {
                    attachment["hash"] = .string(Data(Insecure.SHA1.hash(data: bytes)).base64EncodedString())
                }
                let declared = attachment["contentType"]?.stringValue ?? ""
                if declared.contains("hl7-v3") || (declared.contains("xml") || declared.isEmpty) && CDAHeader.looksLikeCDA(bytes) {
                    let header: CDAHeader
                    do {
                        header = try CDAHeader(bytes)
                    } catch let e as XMLHeaderReader.Malformed {
                        throw FHIRError(.invalid, code: "invalid", "The attachment is not a readable CDA document: \(e.message)", at: place)
                    }
                    if attachment["contentType"] == nil { attachment["contentType"] = .string("application/hl7-v3+xml") }
                    if attachment["title"] == nil, let title = header.title { attachment["title"] = .string(title) }
                    try await apply(header, to: &document, at: at, acting: acting, unit: requests)
                }
                var updated = content.objectValue ?? JSONObject()
                updated["attachment"] = .object(attachment)
                contents[c] = .object(updated)
                changed = true
            }
            if changed {
                document["content"] = .array(contents)
                out[i].resource = .object(document)
            }
        }
        return out
    }

    /// The attachment's bytes: inline data, or the data of the unit's Binary it points at (nil: neither).
    func bytes(of attachment: JSONObject, in requests: [WriteRequest], at place: String) throws(FHIRError) -> [UInt8]? {
        if let data = attachment["data"]?.stringValue {
            guard let bytes = Base64.decode(data) else { throw FHIRError(.invalid, code: "invalid", "data is not base64", at: place + ".data") }
            return bytes
        }
        guard let url = attachment["url"]?.stringValue,
              let binary = requests.first(where: { $0.key.type == "Binary" && (url == "Binary/" + $0.key.id || url.hasSuffix("/Binary/" + $0.key.id)) }),
              let data = binary.resource?["data"]?.stringValue else { return nil }
        return Base64.decode(data)
    }

    /// Fills what the DocumentReference leaves out from the header, and refuses what disagrees.
    func apply(_ header: CDAHeader, to document: inout JSONObject, at: String, acting: FHIRService, unit: [WriteRequest]) async throws {
        func disagree(_ what: String, _ element: String) -> FHIRError {
            FHIRError(.businessRule, code: "business-rule", "The CDA header's \(what) disagrees with DocumentReference.\(element)", at: "\(at).\(element)")
        }
        if let id = header.id {
            if let given = document["masterIdentifier"] {
                if given["system"] != id.identifier["system"] || given["value"] != id.identifier["value"] { throw disagree("document id (ClinicalDocument/id)", "masterIdentifier") }
            } else {
                document["masterIdentifier"] = id.identifier
            }
        }
        if let type = header.type {
            let coding = JSONObject([("system", .string(type.system)), ("code", .string(type.code))]
                                    + (type.display.map { [("display", JSON.string($0))] } ?? []))
            if let given = document["type"] {
                let codings = given["coding"]?.arrayValue ?? []
                if !codings.isEmpty && !codings.contains(where: { $0["system"]?.stringValue == type.system && $0["code"]?.stringValue == type.code }) {
                    throw disagree("type (ClinicalDocument/code \(type.code))", "type")
                }
            } else {
                document["type"] = .object(JSONObject([("coding", .array([.object(coding)]))]))
            }
        }
        if document["date"] == nil, let time = header.effectiveTime { document["date"] = .string(time) }
        if document["securityLabel"] == nil, let code = header.confidentiality {
            document["securityLabel"] = .array([.object(JSONObject([("coding", .array([.object(JSONObject([
                ("system", .string("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")), ("code", .string(code))]))]))]))])
        }
        if document["description"] == nil, let title = header.title { document["description"] = .string(title) }
        if document["author"] == nil {
            var authors: [JSON] = []
            if let org = header.authorOrganization {
                authors.append(Self.reference("Organization", id: org.id, display: org.name))
            }
            if let person = header.authorPerson { authors.append(.object(JSONObject([("display", .string(person))]))) }
            if !authors.isEmpty { document["author"] = .array(authors) }
        }
        if document["custodian"] == nil, let org = header.custodian {
            document["custodian"] = Self.reference("Organization", id: org.id, display: org.name)
        }
        try await subject(header, &document, at: at, acting: acting, unit: unit)
    }

    static func reference(_ type: String, id: CDAHeader.InstanceID?, display: String?) -> JSON {
        var members: [(String, JSON)] = [("type", .string(type))]
        if let id, id.extension != nil { members.append(("identifier", id.identifier)) }
        if let display, !display.isEmpty { members.append(("display", .string(display))) }
        return .object(JSONObject(members))
    }

    /// The resident the header's `recordTarget` identifies: names the subject when the
    /// DocumentReference has none; when it has one, must be that resident (the same Patient, or
    /// one linked to the same master Person).
    func subject(_ header: CDAHeader, _ document: inout JSONObject, at: String, acting: FHIRService, unit: [WriteRequest]) async throws {
        let identifiers = header.patientIDs.filter { $0.extension != nil }.map(\.identifier)
        guard !identifiers.isEmpty else { return }
        var found: [ResourceKey] = []
        for identifier in identifiers {
            if let key = try await acting.patient(identifiedBy: identifier) { found.append(key) }
        }
        // A Patient registered in this very unit (a provide that carries the patient too).
        for request in unit where request.key.type == "Patient" {
            let own = request.resource?["identifier"]?.arrayValue ?? []
            if identifiers.contains(where: { id in own.contains { $0["system"] == id["system"] && $0["value"] == id["value"] } }) {
                found.append(request.key)
            }
        }
        guard let reference = document["subject"]?["reference"]?.stringValue else {
            guard let first = found.first else {
                if document["subject"] == nil {
                    throw FHIRError(.businessRule, code: "business-rule",
                                    "The CDA header's patient (recordTarget/patientRole/id) is not a registered patient the writer may read; "
                                    + "register the Patient first or name it in DocumentReference.subject", at: "\(at).subject")
                }
                return
            }
            document["subject"] = .object(JSONObject([("reference", .string(first.description)), ("identifier", identifiers[0])]))
            return
        }
        guard !found.isEmpty, let subject = ResourceKey(reference: reference), subject.type == "Patient" else { return }
        if found.contains(subject) { return }
        let person = try await service.masterIndex?.linkedRecords(of: subject)?.person
        for key in found {
            if let person, try await service.masterIndex?.linkedRecords(of: key)?.person == person { return }
        }
        throw FHIRError(.businessRule, code: "business-rule",
                        "The CDA header's patient (recordTarget/patientRole/id) is another resident than DocumentReference.subject (\(reference))",
                        at: "\(at).subject")
    }

    public func companions(for write: PreparedWrite, principal: Principal) async throws -> Companions {
        guard write.key.type == "DocumentReference", write.action != .delete, let document = write.resource,
              document["status"]?.stringValue == "current" else { return .none }
        var writes: [WriteRequest] = []
        for (n, relation) in (document["relatesTo"]?.arrayValue ?? []).enumerated() where relation["code"]?.stringValue == "replaces" {
            let at = "DocumentReference.relatesTo[\(n)].target"
            guard let reference = relation["target"]?["reference"]?.stringValue, let old = ResourceKey(reference: reference),
                  old.type == "DocumentReference", old != write.key else {
                throw FHIRError(.invalid, code: "invalid", "A replaced document is named by a DocumentReference reference", at: at)
            }
            // A document the writer may not read looks exactly like one that does not exist.
            let readable = (try? await service.acting(as: principal).read("DocumentReference", old.id)) != nil
            guard readable, let record = try await service.store.read(old), !record.deleted,
                  var stored = IdentifierProtection.parse(record.content, revealing: service.pipeline.protection) else {
                throw FHIRError(.businessRule, code: "business-rule", "The replaced document \(reference) does not exist", at: at)
            }
            guard stored["status"]?.stringValue == "current" else {
                throw FHIRError(.businessRule, code: "business-rule", "The replaced document \(reference) is not current (it is \(stored["status"]?.stringValue ?? "without status"))", at: at)
            }
            guard principal.role == .administrator || FHIRService.sourceFacility(of: stored) == principal.facility else {
                throw FHIRError(.forbidden, code: "forbidden", "Only the facility that shared \(reference) may replace it", at: at)
            }
            let newSubject = document["subject"]?["reference"]?.stringValue, oldSubject = stored["subject"]?["reference"]?.stringValue
            if newSubject != oldSubject {
                var same = false
                if let a = newSubject.flatMap(ResourceKey.init(reference:)), let b = oldSubject.flatMap(ResourceKey.init(reference:)),
                   let index = service.masterIndex {
                    let pa = try await index.linkedRecords(of: a)?.person
                    let pb = try await index.linkedRecords(of: b)?.person
                    same = pa != nil && pa == pb
                }
                guard same else {
                    throw FHIRError(.businessRule, code: "business-rule", "The replaced document \(reference) is about another patient", at: at)
                }
            }
            stored["status"] = .string("superseded")
            writes.append(.generated(stored, key: old, method: "PUT", ifMatch: record.version, validate: true))
        }
        return Companions(writes: writes)
    }
}
