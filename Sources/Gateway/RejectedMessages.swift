import Access
import FHIRModel
import Foundation
import Platform
import HL7v2
import Store

/// The messages the HL7 gateway answered with AE or AR, kept 30 days (`HL7Gateway.keepRejected`)
/// for the platform's operators and administrators, who diagnose a sender's interface: the list
/// shows no patient data (sender, codes, where, when); one message shows its text (patient data),
/// and reading it is audited like any other access.
public struct RejectedMessages: Sendable {
    let service: FHIRService
    static let operation = Interaction.operation("hl7-rejected")

    public init(service: FHIRService) {
        self.service = service
    }

    /// Newest first, at most `count`, of one sender (`MSH-3^MSH-4`) or all.
    public func list(sender: String?, count: Int) async throws -> JSON {
        try await service.authorize(Self.operation, nil)
        let now = HL7Gateway.now()
        var found: [(expires: Int64, summary: JSONObject)] = []
        for record in try await service.store.records(kind: HL7Gateway.rejectedKind, now: now) {
            guard case .object(let content)? = try? JSONParser.parse(Array(record.content.utf8)) else { continue }
            if let sender, content["sender"]?.stringValue != sender { continue }
            found.append((record.expires ?? 0, Self.summary(record, content)))
        }
        found.sort { $0.expires > $1.expires }
        try await service.trail.append(Self.operation, type: nil, entities: [], patients: [], query: sender.map { "sender=\($0)" })
        return .object(JSONObject([("total", .number(String(found.count))),
                                   ("messages", .array(found.prefix(count).map { .object($0.summary) }))]))
    }

    /// One message: the summary, the error, and the message as received (text in its character
    /// set, and base64).
    public func read(_ id: String) async throws -> JSON {
        try await service.authorize(Self.operation, nil)
        guard let record = try await service.store.record(kind: HL7Gateway.rejectedKind, id: id, now: HL7Gateway.now()),
              case .object(let content)? = try? JSONParser.parse(Array(record.content.utf8)) else {
            try? await service.trail.append(Self.operation, type: nil, entities: [], patients: [], query: "id=\(id)",
                                            outcome: .denied("unknown message"))
            throw FHIRError(.notFound, code: "not-found", "No rejected HL7 message \(id) (they are kept 30 days)")
        }
        var out = Self.summary(record, content)
        var detail = content["detail"]
        if let sealed = content["sealed"]?.stringValue {
            guard let bytes = service.pipeline.protection?.open(sealed, context: HL7Gateway.rejectedKind),
                  let opened = try? JSONParser.parse(bytes) else {
                throw FHIRError(.internal, code: "exception", "The message is sealed with a key that is not in the identifier keyring")
            }
            detail = opened
        }
        out["error"] = detail?["error"]
        if let base64 = detail?["message"]?.stringValue, let bytes = Data(base64Encoded: base64) {
            out["messageBase64"] = .string(base64)
            if let (text, charset) = try? Charsets.text(of: [UInt8](bytes)) {
                out["message"] = .string(text)
                out["charset"] = .string(charset.rawValue)
            }
        }
        try await service.trail.append(Self.operation, type: nil, entities: [], patients: [], query: "id=\(id)")
        return .object(out)
    }

    static func summary(_ record: PlatformRecord, _ content: JSONObject) -> JSONObject {
        var o = JSONObject([("id", .string(record.id))])
        for member in ["sender", "code", "hl7Code", "location"] { o[member] = content[member] }
        if let expires = record.expires {
            o["received"] = .string(FHIRDateTime.formatInstant(micros: expires - HL7Gateway.keepRejected))
            o["expires"] = .string(FHIRDateTime.formatInstant(micros: expires))
        }
        return o
    }
}
