import Access
import Foundation
import FHIRModel
import NIOCore
import Store

/// What a principal sees of stored resident ID and phone numbers: in clear where
/// `AccessPolicy.seesIdentifiers` allows it, masked otherwise (`IdentifierProtection`). Every
/// resource a response carries passes through here; records without encrypted values (most)
/// pass unchanged, without parsing.
public struct IdentifierPresenter: Sendable {
    let protection: IdentifierProtection?
    let principal: Principal
    let policy = AccessPolicy()

    public init(protection: IdentifierProtection?, principal: Principal) {
        self.protection = protection
        self.principal = principal
    }

    public func content(_ content: ByteBuffer?, type: String) -> ByteBuffer? {
        guard let protection, let content, content.withUnsafeReadableBytes(IdentifierProtection.holdsEncrypted),
              case .object(let stored)? = try? JSONParser.parse(content.readableBytesView) else { return content }
        let clear = policy.seesIdentifiers(principal, type: type, sourceFacility: PatientDataGate.sourceFacility(content))
        return ByteBuffer(bytes: JSONWriter.bytes(.object(clear ? protection.reveal(stored) : protection.mask(stored))))
    }

    public func record(_ r: ResourceRecord) -> ResourceRecord {
        guard protection != nil, let content = r.content else { return r }
        return ResourceRecord(key: r.key, version: r.version, lastUpdated: r.lastUpdated, deleted: r.deleted, method: r.method,
                              content: self.content(content, type: r.key.type))
    }

    public func records(_ rs: [ResourceRecord]) -> [ResourceRecord] {
        protection == nil ? rs : rs.map(record)
    }

    public func result(_ r: InteractionResult) -> InteractionResult {
        guard protection != nil, let type = r.key?.type else { return r }
        var out = r
        out.content = content(r.content, type: type)
        return out
    }

    /// Search text as audited: values that may be ID or phone numbers masked (the audit trail
    /// must not hold what the store encrypts).
    public static func auditedQuery(_ text: String) -> String {
        var out = ""
        var run = ""
        func flush() {
            if IdentifierProtection.mayBeProtected(run), run.filter(\.isNumber).count >= 7, !isDate(run) {
                out += IdentifierProtection.masked(run, kind: run.count >= 15 ? "id" : "phone")
            } else {
                out += run
            }
            run = ""
        }
        for c in text.removingPercentEncoding ?? text {
            if c == "&" || c == "=" || c == "," || c == "|" {
                flush()
                out.append(c)
            } else {
                run.append(c)
            }
        }
        flush()
        return out
    }

    /// `2024-01-01`, `2024-01`, `20240101`: dates, not numbers to hide.
    static func isDate(_ s: String) -> Bool {
        let parts = s.split(separator: "-")
        if parts.count > 1 {
            return parts.count <= 3 && parts[0].count == 4 && parts.dropFirst().allSatisfy { $0.count == 2 }
        }
        return s.count == 8 && s.allSatisfy(\.isNumber) && (s.hasPrefix("19") || s.hasPrefix("20"))
    }
}
