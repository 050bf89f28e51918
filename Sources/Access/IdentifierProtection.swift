import Crypto
import FHIRModel
import Foundation
import NIOCore
import Store

/// Resident ID numbers (居民身份证号) and phone numbers at rest (DESIGN.md §5): encrypted in stored
/// resources, searchable by exact value through a keyed blind index, shown in clear only to callers
/// the access decision allows (`AccessPolicy.seesIdentifiers`) and masked for everyone else.
///
/// What is protected: every element with a `system` of the resident ID number and a `value`
/// (an `Identifier` anywhere, a `Reference.identifier`, a newborn's mother's ID in an extension),
/// and in residents' own resources (Patient, Person, RelatedPerson) every `ContactPoint` whose
/// system is `phone` or `sms`.
///
/// Stored form: the `value` is replaced by the primitive's extension (`_value`), so the stored JSON
/// stays valid FHIR and never holds the number:
/// `"_value":{"extension":[{"url":"…/encrypted-value","valueString":"<key id>:<base64 nonce‖ciphertext‖tag>"}]}`.
/// AES-256-GCM with a 96-bit random nonce; the element's kind (`id`, `phone`) is authenticated, so a
/// ciphertext cannot be moved from a phone to an ID number.
///
/// Keys: a keyring of named 256-bit secrets (`<key id> <base64>` per line). The last key encrypts new
/// writes; every key decrypts, so adding a key rotates without rewriting old data. The blind index
/// key is derived from the first key and stays fixed (changing it needs `huitong reindex`).
public struct IdentifierProtection: Sendable {
    public static let residentIDSystem = "urn:oid:2.16.156.10011.1.3"
    public static let encryptedValueURL = ResourceValidator.encryptedValueURL
    /// HL7 v3 ObservationValue `MASKED`: the response hides information the caller may not see.
    public static let maskedSecurity = JSON.object(JSONObject([
        ("system", .string("http://terminology.hl7.org/CodeSystem/v3-ObservationValue")), ("code", .string("MASKED")),
        ("display", .string("masked")),
    ]))
    /// Types whose phone numbers are a resident's own.
    public static let residentTypes: Set<String> = ["Patient", "Person", "RelatedPerson"]
    /// Prefix of blind index codes (never a real identifier: real ones hold no colon-led tag).
    static let blindPrefix = "hmac:"

    public enum KeyError: Error, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            switch self { case .invalid(let why): return why }
        }
    }

    let encryptionKeys: [String: SymmetricKey]
    let activeKeyID: String
    let blindKey: SymmetricKey
    /// HMAC with the blind key already set up, copied for each code (the key schedule once, not per value).
    let blindMAC: HMAC<SHA256>

    /// - Parameter keyring: lines (or `;`-separated entries) of `<key id> <base64 of 32 bytes>`;
    ///   lines starting with `#` are comments.
    public init(keyring: String) throws {
        var keys: [(String, SymmetricKey)] = []
        // Lines, or `;`-separated entries (one environment variable); `#` lines are comments.
        let entries = keyring.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
            .flatMap { $0.split(separator: ";") }
        for raw in entries {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let bytes = Data(base64Encoded: String(parts[1])), bytes.count == 32 else {
                throw KeyError.invalid("An identifier key line must be '<key id> <base64 of 32 random bytes>'")
            }
            let id = String(parts[0])
            guard !id.contains(":"), !keys.contains(where: { $0.0 == id }) else {
                throw KeyError.invalid("Identifier key ids must be unique and contain no ':' ('\(id)')")
            }
            keys.append((id, SymmetricKey(data: bytes)))
        }
        guard let first = keys.first, let last = keys.last else { throw KeyError.invalid("The identifier keyring holds no key") }
        var derived: [String: SymmetricKey] = [:]
        for (id, key) in keys {
            derived[id] = HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("huitong identifier encryption v1".utf8), outputByteCount: 32)
        }
        encryptionKeys = derived
        activeKeyID = last.0
        blindKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: first.1, info: Data("huitong identifier blind index v1".utf8), outputByteCount: 32)
        blindMAC = HMAC<SHA256>(key: blindKey)
    }

    /// A keyring line with a new random key.
    public static func newKeyLine(id: String) -> String {
        let key = SymmetricKey(size: .bits256)
        return id + " " + key.withUnsafeBytes { Data($0).base64EncodedString() }
    }

    // MARK: blind index

    /// The blind index code of a protected value: HMAC-SHA256 under the index key of the value with
    /// spaces and hyphens removed and letters upper-cased (so `11010…002x` finds `11010…002X`).
    public func blind(_ value: String) -> String {
        // ASCII (every ID and phone number): normalised byte by byte; anything else by Character,
        // the same result (stored codes depend on it) at a String per character.
        if value.utf8.allSatisfy({ $0 < 0x80 }) {
            var normalized: [UInt8] = []
            normalized.reserveCapacity(value.utf8.count)
            for b in value.utf8 where b != UInt8(ascii: " ") && b != UInt8(ascii: "-") {
                normalized.append(b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") ? b - 0x20 : b)
            }
            return Self.blindPrefix + tag(normalized)
        }
        var normalized = ""
        normalized.reserveCapacity(value.utf8.count)
        for c in value where c != " " && c != "-" { normalized.append(contentsOf: c.uppercased()) }
        return Self.blindPrefix + tag(Data(normalized.utf8))
    }

    /// The blind code a searched token value is also looked up as, if it may be a protected value:
    /// any value in the ID number or phone systems, and a value of any system shaped like a number.
    public func searchable(system: String?, code: String) -> String? {
        switch system {
        case Self.residentIDSystem?, "phone"?, "sms"?: return blind(code)
        default: return Self.mayBeProtected(code) ? blind(code) : nil
        }
    }

    /// A keyed, one-way form of any string (the master index's blocking keys, which hold ID and
    /// phone numbers), compared only for equality.
    public func blindKeyed(_ value: String) -> String {
        var value = value
        return value.withUTF8 { tag(UnsafeRawBufferPointer($0)) }
    }

    private func tag(_ data: some DataProtocol) -> String {
        var h = blindMAC
        h.update(data: data)
        let mac = h.finalize()
        // 128 bits, base64url without padding.
        return mac.withUnsafeBytes { Base64.urlEncode($0.prefix(16)) }
    }

    /// Whether a searched token value could be a protected one (an ID or phone number): searches
    /// for such values also look up their blind index code.
    public static func mayBeProtected(_ value: String) -> Bool {
        var digits = 0
        for c in value.unicodeScalars {
            switch c {
            case "0"..."9": digits += 1
            case "X", "x", "+", "-", " ", "(", ")": continue
            default: return false
            }
        }
        return digits >= 6
    }

    /// A value that checks the keyring against a store (same value: same blind index key).
    public var keyCheck: String { tag(Data("huitong identifier key check".utf8)) }

    // MARK: writes

    /// The stored form of a resource and the protected values it held (their index entries are
    /// blinded with `blindIndex`).
    /// `sealingDocuments: false` (for the index rows of a stored version): documents left as they are.
    public func protect(_ resource: JSONObject, type: String, sealingDocuments: Bool = true) -> (stored: JSONObject, secrets: Set<String>) {
        var secrets = Set<String>()
        let phones = Self.residentTypes.contains(type)
        // The walk's closure holds the active key alone, not `self` (copied at every step, it
        // cost a tenth of the ingest of results).
        let (keyID, key) = (activeKeyID, encryptionKeys[activeKeyID]!)
        let root = type == "Binary" && sealingDocuments ? Self.sealDocument(resource, keyID: keyID, key: key) ?? resource : resource
        let stored = Self.walk(root) { object in
            if sealingDocuments, let sealed = Self.sealDocument(object, keyID: keyID, key: key, attachment: true) { return sealed }
            guard let kind = Self.kind(of: object, phones: phones), case .string(let value)? = object["value"] else { return nil }
            secrets.insert(value)
            return Self.encrypt(value, kind: kind, in: object, keyID: keyID, key: key)
        }
        return (stored, secrets)
    }

    // MARK: documents

    /// Authenticated with every sealed document: a document's ciphertext cannot be moved into an
    /// identifier, nor an identifier's into a document.
    static let documentKind = "document"
    /// A document whose base64 text holds whitespace (line breaks, as the spec's own examples do)
    /// is sealed as that text, so that it reads back exactly as sent; any other as its bytes.
    static let documentTextKind = "document-text"

    /// A document at rest (a Binary's `data`, an Attachment's `data`: a CDA discharge summary, a
    /// scanned report) holds the resident's name, ID number and address in its own format, out of
    /// reach of the identifier walk; it is sealed whole. Its bytes (not their base64 text) are
    /// sealed, and the stored form keeps `data` as the primitive's extension, like an identifier's
    /// `value`. Nil for an object that holds no document (or data that is not base64, which
    /// validation refused before any store). `attachment`: the object must be shaped like an
    /// Attachment (`isAttachment`).
    static func sealDocument(_ object: JSONObject, keyID: String, key: SymmetricKey, attachment: Bool = false) -> JSONObject? {
        guard case .string(let text)? = object["data"], !attachment || isAttachment(object),
              let bytes = Base64.decode(text) else { return nil }
        let spaced = text.utf8.contains { $0 <= 0x20 }
        let sealed = spaced ? try! AES.GCM.seal(Array(text.utf8), using: key, authenticating: Data(documentTextKind.utf8))
            : try! AES.GCM.seal(bytes, using: key, authenticating: Data(documentKind.utf8))
        return sealing("data", in: object, token: keyID + ":" + sealed.combined!.withUnsafeBytes { Base64.encode($0) })
    }

    /// What a document's token holds, opened: its bytes, or (`text`) its base64 text as sent.
    public func opened(token: UnsafeRawBufferPointer) -> (plain: Data, text: Bool)? {
        guard let colon = token.firstIndex(of: UInt8(ascii: ":")),
              let key = encryptionKeys[String(decoding: UnsafeRawBufferPointer(rebasing: token[..<colon]), as: UTF8.self)],
              let combined = Base64.decode(UnsafeRawBufferPointer(rebasing: token[(colon + 1)...])),
              let box = try? AES.GCM.SealedBox(combined: combined) else { return nil }
        if let plain = try? AES.GCM.open(box, using: key, authenticating: Data(Self.documentKind.utf8)) { return (plain, false) }
        if let plain = try? AES.GCM.open(box, using: key, authenticating: Data(Self.documentTextKind.utf8)) { return (plain, true) }
        return nil
    }

    /// `object` with its primitive `element` replaced by the primitive's extension holding `token`
    /// (`_element`; other extensions of the primitive kept).
    static func sealing(_ element: String, in object: JSONObject, token: String) -> JSONObject {
        let ext = JSON.object(JSONObject([("url", .string(Self.encryptedValueURL)), ("valueString", .string(token))]))
        var primitive = object["_" + element]?.objectValue ?? JSONObject()
        primitive["extension"] = .array((primitive["extension"]?.arrayValue ?? []) + [ext])
        var members: [(String, JSON)] = []
        for (k, v) in object.members where k != "_" + element {
            members.append(k == element ? ("_" + element, .object(primitive)) : (k, v))
        }
        return JSONObject(members)
    }

    /// `object` with `value` back in its primitive `element` where the encrypted extension was
    /// (the primitive's other extensions, if any, kept).
    static func restoring(_ element: String, in object: JSONObject, value: String) -> JSONObject {
        var members: [(String, JSON)] = []
        for (k, v) in object.members {
            guard k == "_" + element, var primitive = v.objectValue else { members.append((k, v)); continue }
            members.append((element, .string(value)))
            let others = (primitive["extension"]?.arrayValue ?? []).filter { $0["url"]?.stringValue != encryptedValueURL }
            primitive["extension"] = others.isEmpty ? nil : .array(others)
            if !primitive.isEmpty { members.append(("_" + element, .object(primitive))) }
        }
        return JSONObject(members)
    }

    /// The elements of R4 `Attachment` (and their primitive extensions).
    static let attachmentElements: Set<String> = {
        let names = ["id", "extension", "contentType", "language", "data", "url", "size", "hash", "title", "creation"]
        return Set(names + names.map { "_" + $0 })
    }()

    /// An object whose members are all Attachment's: a document's `data`, with or without its
    /// `contentType` (R4 asks for one; nothing refuses its absence). A Signature's `data` (beside
    /// `who`, `when`) or a SampledData's (beside `origin`, `period`) is not a document.
    static func isAttachment(_ object: JSONObject) -> Bool {
        object.members.allSatisfy { attachmentElements.contains($0.key) }
    }

    /// A sealed document's bytes from its token's text (`<kid>:<base64>`, as stored), without
    /// building the resource: a Binary read in its own type. Nil: another keyring, or altered.
    public func openDocument(token: UnsafeRawBufferPointer) -> Data? {
        guard let (plain, text) = opened(token: token) else { return nil }
        guard text else { return plain }
        return plain.withUnsafeBytes { Base64.decode($0) }.map { Data($0) }
    }

    /// The object with its sealed document back in `data` (nil: it holds none). A document that
    /// does not open (another store's keyring, altered) is never wrong data: it stays sealed
    /// (`shown: false`, for what writes the resource again), or, as shown to a reader, its token
    /// gives way to R4's `data-absent-reason` `error` (the reader learns there is a document that
    /// cannot be given, not a token it cannot use).
    func openDocument(_ object: JSONObject, shown: Bool = false) -> JSONObject? {
        guard object["data"] == nil, var primitive = object["_data"]?.objectValue,
              let extensions = primitive["extension"]?.arrayValue,
              var token = extensions.first(where: { $0["url"]?.stringValue == Self.encryptedValueURL })?["valueString"]?.stringValue else { return nil }
        guard let (plain, text) = token.withUTF8({ opened(token: UnsafeRawBufferPointer($0)) }) else {
            guard shown else { return nil }
            // A document kept as a stream (ADR 029) is read in its own type: shown is where it is.
            if let stream = streamReference(token: token) {
                primitive["extension"] = .array(extensions.map {
                    $0["url"]?.stringValue == Self.encryptedValueURL ? Self.storedDocument(stream, in: object) : $0 })
                var out = object
                out["_data"] = .object(primitive)
                return out
            }
            primitive["extension"] = .array(extensions.map { $0["url"]?.stringValue == Self.encryptedValueURL ? Self.absentForError : $0 })
            var out = object
            out["_data"] = .object(primitive)
            return out
        }
        return Self.restoring("data", in: object, value: text ? String(decoding: plain, as: UTF8.self) : plain.withUnsafeBytes { Base64.encode($0) })
    }

    /// The extension that stands in a Binary's `data` for a document kept as a stream: its
    /// content type, size and SHA-1. The document is read with the Binary (that version of it)
    /// in its own type. (No `url`: R4's `url` is absolute, and the store does not know the base.)
    static func storedDocument(_ stream: DocumentStreamReference, in binary: JSONObject) -> JSON {
        var attachment: [(String, JSON)] = []
        if let contentType = binary["contentType"] { attachment.append(("contentType", contentType)) }
        attachment.append(("size", .number(String(stream.size))))
        attachment.append(("hash", .string(Base64.encode(stream.sha1))))
        return .object(JSONObject([("url", .string(ResourceValidator.storedDocumentURL)), ("valueAttachment", .object(JSONObject(attachment)))]))
    }

    static let absentForError: JSON = .object(JSONObject([
        ("url", .string("http://hl7.org/fhir/StructureDefinition/data-absent-reason")), ("valueCode", .string("error"))]))

    /// Index entries with every protected value replaced by its blind index code.
    public func blindIndex(_ entries: [IndexEntry], secrets: Set<String>) -> [IndexEntry] {
        guard !secrets.isEmpty else { return entries }
        return entries.map { entry in
            switch entry.value {
            case .token(let system, let code) where secrets.contains(code):
                return IndexEntry(entry.parameter, .token(system: system, code: blind(code)))
            case .string(_, let exact) where secrets.contains(exact):
                let code = blind(exact)
                return IndexEntry(entry.parameter, .string(code, exact: code))
            default:
                return entry
            }
        }
    }

    // MARK: reads

    static let marker = Array(#"encrypted-value""#.utf8)

    /// Whether stored bytes hold any encrypted value (most records do not and pass unchanged).
    public static func holdsEncrypted(_ bytes: UnsafeRawBufferPointer) -> Bool {
        ByteSearch.find(marker, anchor: 9, in: bytes) != nil
    }

    /// The resource with its protected values in clear.
    /// `documents: false`: sealed documents left sealed (for what needs only the identifiers).
    /// `shown`: as a reader sees it (a document that does not open shows why it is absent).
    public func reveal(_ resource: JSONObject, documents: Bool = true, shown: Bool = false) -> JSONObject {
        Self.walk(documents ? openDocument(resource, shown: shown) ?? resource : resource) { object in
            if documents, let opened = openDocument(object, shown: shown) { return opened }
            guard let (token, kind) = Self.encrypted(in: object) else { return nil }
            return Self.restoring("value", in: object, value: decrypt(token, kind: kind) ?? "******")
        }
    }

    /// The resource with its protected values masked (`1101**********002X`, `138****8000`) and
    /// labelled `MASKED` in `meta.security`, as a reader sees it. Documents are opened: whoever may read a document
    /// reads it whole (the access decision is about the record, and a document is not rewritten).
    public func mask(_ resource: JSONObject) -> JSONObject {
        var masked = false
        var out = Self.walk(openDocument(resource, shown: true) ?? resource) { object in
            if let opened = openDocument(object, shown: true) { return opened }
            guard let (token, kind) = Self.encrypted(in: object) else { return nil }
            masked = true
            return Self.restoring("value", in: object, value: Self.masked(decrypt(token, kind: kind) ?? "", kind: kind))
        }
        if masked {
            var meta = out["meta"]?.objectValue ?? JSONObject()
            var security = meta["security"]?.arrayValue ?? []
            if !security.contains(Self.maskedSecurity) { security.append(Self.maskedSecurity) }
            meta["security"] = .array(security)
            out["meta"] = .object(meta)
        }
        return out
    }

    /// An ID number keeps its first four (region) and last four characters; a phone its first
    /// three and last four digits; anything shorter only its last two.
    public static func masked(_ value: String, kind: String) -> String {
        let chars = Array(value)
        let (head, tail) = kind == "id" ? (4, 4) : (3, 4)
        guard chars.count > head + tail + 1 else {
            return String(repeating: "*", count: max(chars.count - 2, 4)) + String(chars.suffix(2))
        }
        return String(chars.prefix(head)) + String(repeating: "*", count: chars.count - head - tail) + String(chars.suffix(tail))
    }

    // MARK: the walk

    /// Rebuilds the tree, letting `change` replace any object (nil: keep it and look inside).
    private static func walk(_ object: JSONObject, _ change: (JSONObject) -> JSONObject?) -> JSONObject {
        // Each visit gives nil when nothing under the value changes: only the objects and arrays
        // on the way to a changed one are copied (most resources have nothing to protect).
        func visit(_ value: JSON) -> JSON? {
            switch value {
            case .object(let o):
                if let changed = change(o) { return .object(changed) }
                return members(o).map { .object($0) }
            case .array(let a):
                var copy: [JSON]?
                for (i, element) in a.enumerated() {
                    guard let v = visit(element) else { continue }
                    if copy == nil { copy = a }
                    copy![i] = v
                }
                return copy.map { .array($0) }
            default:
                return nil
            }
        }
        func members(_ o: JSONObject) -> JSONObject? {
            var copy: JSONObject?
            for (i, member) in o.members.enumerated() {
                guard let v = visit(member.value) else { continue }
                if copy == nil { copy = o }
                copy!.replaceValue(at: i, with: v)
            }
            return copy
        }
        return members(object) ?? object
    }

    /// `id` for a resident ID number, `phone` for a phone or SMS contact point (where `phones`),
    /// nil for anything else.
    static func kind(of object: JSONObject, phones: Bool = true) -> String? {
        switch object["system"]?.stringValue {
        case residentIDSystem?: return "id"
        case "phone"?, "sms"?: return phones ? "phone" : nil
        default: return nil
        }
    }

    private static func encrypt(_ value: String, kind: String, in object: JSONObject, keyID: String, key: SymmetricKey) -> JSONObject {
        // Sealing with a fresh random nonce cannot fail for these sizes.
        let sealed = try! AES.GCM.seal(Data(value.utf8), using: key, authenticating: Data(kind.utf8))
        return sealing("value", in: object, token: keyID + ":" + sealed.combined!.base64EncodedString())
    }

    /// Any bytes sealed under the active key (`<kid>:<base64>`), for other PHI kept at rest (the
    /// raw HL7 messages of refused deliveries); `context` is authenticated.
    public func seal(_ bytes: [UInt8], context: String) -> String {
        let sealed = try! AES.GCM.seal(Data(bytes), using: encryptionKeys[activeKeyID]!, authenticating: Data(context.utf8))
        return activeKeyID + ":" + sealed.combined!.base64EncodedString()
    }

    /// What `seal` sealed (nil: another key, another context, or altered).
    public func open(_ token: String, context: String) -> [UInt8]? {
        guard let colon = token.firstIndex(of: ":"), let key = encryptionKeys[String(token[..<colon])],
              let data = Data(base64Encoded: String(token[token.index(after: colon)...])),
              let box = try? AES.GCM.SealedBox(combined: data),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Data(context.utf8)) else { return nil }
        return [UInt8](plain)
    }

    /// The ciphertext an object holds in place of its value, and its kind.
    static func encrypted(in object: JSONObject) -> (token: String, kind: String)? {
        guard object["value"] == nil, let kind = kind(of: object),
              let token = object["_value"]?["extension"]?.arrayValue?
                .first(where: { $0["url"]?.stringValue == encryptedValueURL })?["valueString"]?.stringValue else { return nil }
        return (token, kind)
    }


    private func decrypt(_ token: String, kind: String) -> String? {
        guard let colon = token.firstIndex(of: ":"), let key = encryptionKeys[String(token[..<colon])],
              let data = Data(base64Encoded: String(token[token.index(after: colon)...])),
              let box = try? AES.GCM.SealedBox(combined: data),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Data(kind.utf8)) else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}

extension IdentifierProtection {
    /// Stored content parsed, with protected values in clear when `protection` is given (content
    /// without encrypted values is only parsed).
    public static func parse(_ content: ByteBuffer?, revealing protection: IdentifierProtection?) -> JSONObject? {
        guard let content, case .object(let o)? = try? JSONParser.parse(content.readableBytesView) else { return nil }
        guard let protection, content.withUnsafeReadableBytes(holdsEncrypted) else { return o }
        return protection.reveal(o)
    }
}

extension IdentifierProtection {
    static let checkKind = "identifier-keyring"

    /// Ties the keyring to a store: the first keyring a store meets is recorded (by a check value
    /// of its blind index key, which reveals nothing of it); a later start with a keyring whose
    /// index key differs is refused, since its blind codes would find nothing that is stored.
    public func bind(to store: any ResourceStore) async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        if let known = try await store.record(kind: Self.checkKind, id: "blind-index", now: now) {
            guard known.content == keyCheck else {
                throw KeyError.invalid("This identifier keyring is not the one this store was written with (its first key differs); "
                                       + "start with the store's keyring, or run `huitong reindex` after changing the first key on purpose")
            }
            return
        }
        try await rebind(to: store)
    }

    /// Records the current keyring's check value (after `huitong reindex` re-blinded the index).
    public func rebind(to store: any ResourceStore) async throws {
        try await store.commitRecords([RecordWrite(PlatformRecord(kind: Self.checkKind, id: "blind-index", content: keyCheck))])
    }
}
