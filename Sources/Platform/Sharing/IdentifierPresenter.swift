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
        if type == "Subscription", let content, let redacted = subscriptionRedacted(content) { return redacted }
        guard let protection, let content, content.withUnsafeReadableBytes(IdentifierProtection.holdsEncrypted) else { return content }
        if type == "Binary", let opened = Self.openedBinary(content, protection) { return opened }
        guard case .object(let stored)? = try? JSONParser.parse(content.readableBytesView) else { return content }
        let clear = policy.seesIdentifiers(principal, type: type, sourceFacility: PatientDataGate.sourceFacility(content))
        return ByteBuffer(bytes: JSONWriter.bytes(.object(clear ? protection.reveal(stored, shown: true) : protection.mask(stored))))
    }

    /// A Subscription as shown to anyone but its own facility and administrators (an operator
    /// watching connectivity, another facility): its channel's header values (a receiver's key)
    /// and the values in its criteria (patient ids, diagnosis codes) masked, the rest (status,
    /// error, channel type, endpoint host) as stored. ADR 023: endpoint secrets and what a
    /// facility watches for are its own. Nil: shown as stored.
    func subscriptionRedacted(_ content: ByteBuffer) -> ByteBuffer? {
        guard !policy.seesSubscription(principal, facility: PatientDataGate.sourceFacility(content)),
              case .object(var o)? = try? JSONParser.parse(content.readableBytesView) else { return nil }
        if let criteria = o["criteria"]?.stringValue { o["criteria"] = .string(Self.maskedQuery(criteria)) }
        if var extensions = o["_criteria"]?["extension"]?.arrayValue {
            for (i, e) in extensions.enumerated() {
                guard case .object(var ext) = e, let value = ext["valueString"]?.stringValue else { continue }
                ext["valueString"] = .string(Self.maskedQuery(value))
                extensions[i] = .object(ext)
            }
            var primitive = o["_criteria"]?.objectValue ?? JSONObject()
            primitive["extension"] = .array(extensions)
            o["_criteria"] = .object(primitive)
        }
        if var channel = o["channel"]?.objectValue {
            if let headers = channel["header"]?.arrayValue {
                channel["header"] = .array(headers.map { h in
                    // `Name: value`; a header without its colon is masked whole.
                    guard let text = h.stringValue, let colon = text.firstIndex(of: ":") else { return h.stringValue == nil ? h : "******" }
                    return .string(text[..<colon] + ": ******")
                })
            }
            // The scheme, host and port only: a path or user part may carry a token.
            if let endpoint = channel["endpoint"]?.stringValue, let parts = URLComponents(string: endpoint), let host = parts.host,
               let scheme = parts.scheme {
                let shown = "\(scheme)://\(host)" + (parts.port.map { ":\($0)" } ?? "")
                if shown != endpoint { channel["endpoint"] = .string(shown + "/******") }
            } else if channel["endpoint"] != nil {
                channel["endpoint"] = "******"
            }
            o["channel"] = .object(channel)
        }
        return ByteBuffer(bytes: JSONWriter.bytes(.object(o)))
    }

    /// A search with its values masked: `Patient?_id=******&code=******` (the parameters stay).
    static func maskedQuery(_ query: String) -> String {
        guard let q = query.firstIndex(of: "?") else { return query }
        let parts = query[query.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { part -> String in
            guard let eq = part.firstIndex(of: "=") else { return String(part) }
            return String(part[..<eq]) + "=******"
        }
        return String(query[..<q]) + "?" + parts.joined(separator: "&")
    }

    /// A stored Binary's document as it is sent in its own type (R4 http.html#binary; IHE MHD
    /// ITI-68): its content type and bytes, nil when it holds none. Whoever may read the Binary
    /// reads its document whole (ADR 027). The stored JSON is scanned, not parsed: a clear
    /// document's base64 is decoded straight into the buffer sent, a sealed one's token is decoded
    /// and opened (ADR 026); a stored form the scan does not take is parsed whole.
    public func document(_ content: ByteBuffer) -> (contentType: String, bytes: ByteBuffer)? {
        let scanned = content.withUnsafeReadableBytes { bytes -> (contentType: String?, document: ByteBuffer?)? in
            guard let members = JSONMembers.members(in: bytes) else { return nil }
            func string(_ key: String) -> String? {
                members.first { $0.key == key && $0.string }.map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.range]), as: UTF8.self) }
            }
            // A content type with an escape in it (`charset=\"UTF-8\"`) is unescaped by the parser.
            guard string("resourceType") == "Binary", string("contentType")?.contains("\\") != true else { return nil }
            if let data = members.first(where: { $0.key == "data" }) {
                guard data.string else { return nil }
                let text = UnsafeRawBufferPointer(rebasing: bytes[data.range])
                if memchr(text.baseAddress!, 0x5C, text.count) != nil { return nil }  // an escape: parsed whole
                var document = ByteBufferAllocator().buffer(capacity: Base64.maxDecodedCount(text.count))
                var valid = true
                document.writeWithUnsafeMutableBytes(minimumWritableBytes: Base64.maxDecodedCount(text.count)) { out in
                    guard let written = Base64.decode(text, into: out) else { valid = false; return 0 }
                    return written
                }
                return valid ? (string("contentType"), document) : nil
            }
            guard let sealed = members.first(where: { $0.key == "_data" && !$0.string }) else { return (string("contentType"), nil) }
            guard let protection, let token = Self.sealedToken(UnsafeRawBufferPointer(rebasing: bytes[sealed.range]), in: bytes, at: sealed.range.lowerBound),
                  let opened = protection.openDocument(token: token) else { return (string("contentType"), nil) }
            return (string("contentType"), ByteBuffer(bytes: opened))
        }
        if let scanned {
            guard let document = scanned.document else { return nil }
            return (scanned.contentType ?? "application/octet-stream", document)
        }
        guard let o = IdentifierProtection.parse(content, revealing: protection), o["resourceType"]?.stringValue == "Binary",
              let data = o["data"]?.stringValue, let bytes = Base64.decode(data) else { return nil }
        return (o["contentType"]?.stringValue ?? "application/octet-stream", ByteBuffer(bytes: bytes))
    }

    /// A stored Binary whose only sealed value is its document, with the opened document spliced
    /// in place of `"_data":{…}` as `"data":"…"`: the same bytes the generic reveal would write
    /// (the store writes compact JSON in member order), without parsing and writing the whole
    /// document again. Nil (the generic path) for anything else: other sealed values, `_data`
    /// with extensions of its own, a document sealed as its text (it may need escapes), one that
    /// does not open.
    static func openedBinary(_ content: ByteBuffer, _ protection: IdentifierProtection) -> ByteBuffer? {
        content.withUnsafeReadableBytes { bytes -> ByteBuffer? in
            guard let members = JSONMembers.members(in: bytes), !members.contains(where: { $0.key == "data" }),
                  let sealed = members.first(where: { $0.key == "_data" && !$0.string }) else { return nil }
            let object = UnsafeRawBufferPointer(rebasing: bytes[sealed.range])
            guard let fields = JSONMembers.members(in: object), fields.count == 1, fields[0].key == "extension",
                  let elements = JSONMembers.elements(in: UnsafeRawBufferPointer(rebasing: object[fields[0].range])), elements.count == 1,
                  let token = sealedToken(object, in: bytes, at: sealed.range.lowerBound),
                  let (plain, text) = protection.opened(token: token), !text else { return nil }
            // The key's opening quote: `"_data"`, then only whitespace and the colon up to the value.
            var j = sealed.range.lowerBound - 1
            while j >= 0, bytes[j] == 0x20 || bytes[j] == 0x0A || bytes[j] == 0x0D || bytes[j] == 0x09 || bytes[j] == UInt8(ascii: ":") { j -= 1 }
            let key = Array(#""_data""#.utf8)
            guard j - key.count + 1 >= 0, Array(bytes[(j - key.count + 1)...j]) == key else { return nil }
            let head = UnsafeRawBufferPointer(rebasing: bytes[..<(j - key.count + 1)])
            let tail = UnsafeRawBufferPointer(rebasing: bytes[sealed.range.upperBound...])
            // Anything else sealed (an identifier in the security context) needs the generic path.
            guard !IdentifierProtection.holdsEncrypted(head), !IdentifierProtection.holdsEncrypted(tail) else { return nil }
            let text64 = plain.withUnsafeBytes { Base64.encode($0) }
            var out = ByteBufferAllocator().buffer(capacity: head.count + tail.count + text64.utf8.count + 10)
            out.writeBytes(head)
            out.writeString(#""data":""#)
            out.writeString(text64)
            out.writeString("\"")
            out.writeBytes(tail)
            return out
        }
    }

    /// The token of the `encrypted-value` extension in a primitive's `_data` object text.
    static func sealedToken(_ object: UnsafeRawBufferPointer, in bytes: UnsafeRawBufferPointer, at offset: Int) -> UnsafeRawBufferPointer? {
        guard let members = JSONMembers.members(in: object),
              let extensions = members.first(where: { $0.key == "extension" && !$0.string }),
              let elements = JSONMembers.elements(in: UnsafeRawBufferPointer(rebasing: object[extensions.range])) else { return nil }
        for element in elements {
            let start = offset + extensions.range.lowerBound + element.lowerBound
            let text = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + element.count)])
            guard let fields = JSONMembers.members(in: text),
                  let url = fields.first(where: { $0.key == "url" && $0.string }),
                  String(decoding: UnsafeRawBufferPointer(rebasing: text[url.range]), as: UTF8.self) == IdentifierProtection.encryptedValueURL,
                  let value = fields.first(where: { $0.key == "valueString" && $0.string }) else { continue }
            return UnsafeRawBufferPointer(rebasing: text[value.range])
        }
        return nil
    }

    public func record(_ r: ResourceRecord) -> ResourceRecord {
        guard protection != nil || r.key.type == "Subscription", let content = r.content else { return r }
        return ResourceRecord(key: r.key, version: r.version, lastUpdated: r.lastUpdated, deleted: r.deleted, method: r.method,
                              content: self.content(content, type: r.key.type))
    }

    public func records(_ rs: [ResourceRecord]) -> [ResourceRecord] {
        protection == nil && !rs.contains(where: { $0.key.type == "Subscription" }) ? rs : rs.map(record)
    }

    public func result(_ r: InteractionResult) -> InteractionResult {
        guard let type = r.key?.type, protection != nil || type == "Subscription" else { return r }
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
