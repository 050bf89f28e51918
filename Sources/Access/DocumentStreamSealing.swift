import Crypto
import FHIRModel
import Foundation
import NIOCore

/// A large document sealed as a stream (ADR 029): sealed piece by piece as it arrives and
/// opened piece by piece as it is sent, so neither direction holds it whole.
///
/// The STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
/// authenticated-encryption and its nonce-reuse misuse-resistance", 2015) over AES-256-GCM:
/// - each stream has its own key, HKDF-SHA256 of the keyring's key with a random 32-byte salt;
/// - the document is cut into segments of 64 KiB, each sealed with the nonce
///   `counter (11 bytes, big-endian) ‖ last (1 byte)` and, as authenticated data, the stream's
///   header and its id (a whole stream put in another's place does not open there either);
/// - the last segment (possibly empty) is sealed with `last` = 1: a stream cut at a segment
///   boundary does not open, nor do segments reordered, dropped or moved between streams.
///
/// Stored form: the header — `HTDS`, format 1, the key id's length and the key id, the salt, the
/// segment size (4 bytes) — then the sealed segments (each its ciphertext and 16-byte tag).
/// The Binary's stored JSON names the stream in a token sealed like any other value
/// (`streamToken`): its id, the document's size and SHA-1 (R4 `Attachment.hash`).
public struct DocumentStreamReference: Sendable, Equatable {
    public let id: String
    /// The document's size in bytes.
    public let size: Int
    /// SHA-1 of the document (R4 `Attachment.hash`).
    public let sha1: [UInt8]

    public init(id: String, size: Int, sha1: [UInt8]) {
        self.id = id
        self.size = size
        self.sha1 = sha1
    }
}

extension IdentifierProtection {
    public static let streamSegmentSize = 64 * 1024
    static let streamMagic: [UInt8] = Array("HTDS".utf8) + [1]
    /// Authenticated with every stream reference: a reference cannot be moved into an identifier or a document.
    static let streamReferenceKind = "document-stream"

    /// A sealer for the new stream `id`, under the active key.
    public func streamSealer(id: String) -> DocumentStreamSealer {
        var salt = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = generator.next() }
        let kid = Array(activeKeyID.utf8)
        let header = Self.streamMagic + [UInt8(kid.count)] + kid + salt
            + withUnsafeBytes(of: UInt32(Self.streamSegmentSize).bigEndian) { Array($0) }
        return DocumentStreamSealer(header: header, id: id, key: Self.streamKey(encryptionKeys[activeKeyID]!, salt: salt))
    }

    static func streamKey(_ key: SymmetricKey, salt: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, salt: salt, info: Data("huitong document stream v1".utf8), outputByteCount: 32)
    }

    /// An opener for stream `id` with this header; nil when it is not one, or its key is not in the keyring.
    public func streamOpener(header bytes: ByteBuffer, id: String) -> DocumentStreamOpener? {
        let b = Array(bytes.readableBytesView)
        guard b.count > Self.streamMagic.count + 1, Array(b[..<Self.streamMagic.count]) == Self.streamMagic else { return nil }
        let kidLength = Int(b[Self.streamMagic.count])
        let kidStart = Self.streamMagic.count + 1
        let length = kidStart + kidLength + 32 + 4
        guard b.count >= length, let key = encryptionKeys[String(decoding: b[kidStart..<(kidStart + kidLength)], as: UTF8.self)] else { return nil }
        let salt = Array(b[(kidStart + kidLength)..<(kidStart + kidLength + 32)])
        let segment = b[(length - 4)..<length].reduce(0) { $0 << 8 | Int($1) }
        guard segment > 0, segment <= 16 << 20 else { return nil }
        return DocumentStreamOpener(header: Array(b[..<length]), id: id, segmentSize: segment, key: Self.streamKey(key, salt: salt))
    }

    /// The longest a stream's header can be (what a reader fetches first).
    public static let streamHeaderMaximum = 5 + 1 + 255 + 32 + 4

    /// The token a stored Binary holds for its stream, sealed like an identifier's value.
    public func streamToken(_ reference: DocumentStreamReference) -> String {
        let text = "\(reference.id) \(reference.size) \(Base64.encode(reference.sha1))"
        return seal(Array(text.utf8), context: Self.streamReferenceKind)
    }

    /// The stream a token names; nil for any other token (an identifier's, a document's), another keyring's or an altered one.
    public func streamReference(token: String) -> DocumentStreamReference? {
        guard let plain = open(token, context: Self.streamReferenceKind) else { return nil }
        let parts = String(decoding: plain, as: UTF8.self).split(separator: " ")
        guard parts.count == 3, let size = Int(parts[1]), let sha1 = Base64.decode(String(parts[2])) else { return nil }
        return DocumentStreamReference(id: String(parts[0]), size: size, sha1: sha1)
    }

    /// The stream a stored Binary (as stored, or parsed from it) names in its `_data`.
    public func streamReference(in binary: JSONObject) -> DocumentStreamReference? {
        guard binary["data"] == nil, let token = Self.encryptedToken(in: binary["_data"]) else { return nil }
        return streamReference(token: token)
    }

    public static func encryptedToken(in primitive: JSON?) -> String? {
        primitive?["extension"]?.arrayValue?.first { $0["url"]?.stringValue == encryptedValueURL }?["valueString"]?.stringValue
    }

    /// The sealed size of a document of `size` bytes under a header of `header` bytes.
    public static func sealedStreamSize(document size: Int, header: Int) -> Int {
        let segments = max(1, (size + streamSegmentSize - 1) / streamSegmentSize)
        return header + size + segments * 16
    }
}

/// Seals a document as it arrives (see `DocumentStreamReference`). Feed it with `add`, end with
/// `finish`; each returns the sealed bytes to append to the stream.
public struct DocumentStreamSealer: Sendable {
    public let header: [UInt8]
    let id: String
    let key: SymmetricKey
    var pending: [UInt8] = []
    var counter: UInt64 = 0
    var hash = Insecure.SHA1()
    public private(set) var size = 0

    init(header: [UInt8], id: String, key: SymmetricKey) {
        self.header = header
        self.id = id
        self.key = key
    }

    /// Sealed segments for the bytes so far: a full segment is sealed once a byte beyond it has
    /// come (until then it may be the last).
    public mutating func add(_ bytes: ByteBuffer) -> ByteBuffer? {
        bytes.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
        size += bytes.readableBytes
        pending.append(contentsOf: bytes.readableBytesView)
        let segment = IdentifierProtection.streamSegmentSize
        guard pending.count > segment else { return nil }
        let full = (pending.count - 1) / segment
        var out = ByteBuffer()
        out.reserveCapacity(full * (segment + 16))
        for i in 0..<full { out.writeBytes(seal(pending[(i * segment)..<((i + 1) * segment)], last: false)) }
        pending.removeFirst(full * segment)
        return out
    }

    /// The last segment (the rest of the document, maybe empty), and the stream's reference.
    public mutating func finish() -> (ByteBuffer, DocumentStreamReference) {
        let last = ByteBuffer(bytes: seal(pending[...], last: true))
        pending = []
        return (last, DocumentStreamReference(id: id, size: size, sha1: Array(hash.finalize())))
    }

    mutating func seal(_ plain: ArraySlice<UInt8>, last: Bool) -> [UInt8] {
        let nonce = DocumentStreamOpener.nonce(counter, last: last)
        counter += 1
        let box = try! AES.GCM.seal(plain, using: key, nonce: nonce, authenticating: header + Array(id.utf8))
        return Array(box.ciphertext) + Array(box.tag)
    }
}

/// Opens a stream segment by segment (see `DocumentStreamReference`).
public struct DocumentStreamOpener: Sendable {
    public let header: [UInt8]
    let id: String
    public let segmentSize: Int
    let key: SymmetricKey

    static func nonce(_ counter: UInt64, last: Bool) -> AES.GCM.Nonce {
        let bytes = [0, 0, 0] + withUnsafeBytes(of: counter.bigEndian) { Array($0) } + [last ? 1 : 0]
        return try! AES.GCM.Nonce(data: bytes)
    }

    /// The sealed size of one full segment.
    public var sealedSegmentSize: Int { segmentSize + 16 }

    /// The number of segments of a stream of `stored` bytes (its header included).
    public func segments(stored: Int) -> Int {
        max(1, (stored - header.count + sealedSegmentSize - 1) / sealedSegmentSize)
    }

    /// Segment `index` opened (nil: altered, out of place, or cut short).
    public func open(_ sealed: ByteBuffer, index: Int, last: Bool) -> ByteBuffer? {
        guard sealed.readableBytes >= 16 else { return nil }
        let bytes = Array(sealed.readableBytesView)
        guard let box = try? AES.GCM.SealedBox(nonce: Self.nonce(UInt64(index), last: last), ciphertext: bytes[..<(bytes.count - 16)],
                                                tag: bytes[(bytes.count - 16)...]),
              let plain = try? AES.GCM.open(box, using: key, authenticating: header + Array(id.utf8)) else { return nil }
        return ByteBuffer(bytes: plain)
    }
}
