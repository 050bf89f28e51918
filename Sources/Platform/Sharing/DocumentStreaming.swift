import Access
import FHIRModel
import NIOCore
import Store

/// Large documents streamed in and out (ADR 029): a Binary sent in its own type whose document
/// passes the streaming threshold is sealed piece by piece into the store's document streams as
/// it arrives, and read back piece by piece as the client takes it. The Binary itself is an
/// ordinary write through the one pipeline (validation, access decision, audit); its stored form
/// names the stream in a sealed token.
public enum StreamedDocument {
    /// The stream the request being written carries, set by the route that received it around
    /// its one write (`FHIRService.writeStreamed`) and read by `IngestPipeline.prepare`. No JSON
    /// can name a stream: only the task that sealed it holds its token.
    @TaskLocal public static var pending: Pending?

    public struct Pending: Sendable {
        public let token: String
        public let reference: DocumentStreamReference
    }
}

/// A stored document being read as a stream, after the access decision and the audit.
public struct DocumentStreamRead: Sendable {
    public let reference: DocumentStreamReference
    let opener: DocumentStreamOpener
    let streams: any DocumentStreams
    let stored: Int
    /// Segments read from the store at a time (about 1 MiB).
    static let segmentsPerRead = 16

    /// Sends the document, opened segment by segment, to `write` (which the client's pace holds
    /// back). A segment that does not open (altered, cut short) stops it with an error: the
    /// client gets less than the announced length, never different bytes.
    public func send(_ write: (ByteBuffer) async throws -> Void) async throws {
        let count = opener.segments(stored: stored)
        var index = 0
        var sent = 0
        while index < count {
            let n = min(Self.segmentsPerRead, count - index)
            let offset = opener.header.count + index * opener.sealedSegmentSize
            var sealed = try await streams.read(reference.id, offset: offset, count: n * opener.sealedSegmentSize)
            var out = ByteBufferAllocator().buffer(capacity: n * opener.segmentSize)
            for i in index..<(index + n) {
                guard let segment = sealed.readSlice(length: min(opener.sealedSegmentSize, sealed.readableBytes)),
                      var plain = opener.open(segment, index: i, last: i == count - 1) else {
                    throw StoreError.storage("Document stream \(reference.id) does not open at segment \(i) (altered or cut short)")
                }
                out.writeBuffer(&plain)
            }
            sent += out.readableBytes
            try await write(out)
            index += n
        }
        guard sent == reference.size else {
            throw StoreError.storage("Document stream \(reference.id) holds \(sent) bytes, not \(reference.size)")
        }
    }
}

extension FHIRService {
    /// Receives a document as a stream: `prefix` (what the route read before deciding to stream)
    /// and the rest of the body, sealed and appended as it comes. More than `limit` bytes in all
    /// is refused (413) and the stream discarded; so is a document that would take the store's
    /// disk below its reserve (507), before any of it is kept when its length is `declared`.
    public func receiveDocument<Body: AsyncIteratorProtocol>(prefix: ByteBuffer, rest: inout Body, limit: Int, declared: Int? = nil) async throws
        -> StreamedDocument.Pending where Body.Element == ByteBuffer {
        guard let protection = pipeline.protection else {
            throw FHIRError(.tooCostly, code: "too-costly", "Documents above the body limit are kept as sealed streams, which need the identifier keyring")
        }
        let streams = store.documentStreams
        // A document the disk has no room for is refused before any of it is kept (its declared
        // length; the writer checks again as it writes).
        if let declared, declared > limit {
            throw FHIRError(.tooCostly, code: "too-costly", "The document exceeds the limit of \(limit) bytes")
        }
        do { try await streams.ensureRoom(for: declared ?? prefix.readableBytes) } catch let error as StoreError { throw FHIRError.from(error) }
        let writer = try await streams.create()
        do {
            var sealer = protection.streamSealer(id: writer.id)
            try await writer.append(ByteBuffer(bytes: sealer.header))
            var next: ByteBuffer? = prefix
            while let chunk = next {
                guard sealer.size + chunk.readableBytes <= limit else {
                    throw FHIRError(.tooCostly, code: "too-costly", "The document exceeds the limit of \(limit) bytes")
                }
                if let sealed = sealer.add(chunk) { try await writer.append(sealed) }
                next = try await rest.next()
            }
            let (last, reference) = sealer.finish()
            try await writer.append(last)
            _ = try await writer.finish()
            return StreamedDocument.Pending(token: protection.streamToken(reference), reference: reference)
        } catch {
            await streams.discard(writer.id)
            if let error = error as? StoreError, case .streamRemoved = error { throw FHIRError.from(error) }
            if let error = error as? StoreError, case .insufficientStorage = error { throw FHIRError.from(error) }
            throw error
        }
    }

    /// What refuses a streamed write before any of its document is kept (ADR 029): the scopes
    /// (a conditional create's too); for an update, an id that is none, and of a stored Binary the
    /// writer's right to change it and `If-Match`. (The write checks all of it again, with the
    /// rest, when it commits: a resident's compartment, a conditional create's match.)
    public func checkStreamedWrite(id: String?, ifMatch: Int?, conditional: Bool = false) async throws {
        try await authorize(id == nil ? .create : .update, "Binary")
        if conditional { try await authorize(.conditionalCreate, "Binary") }
        guard let id else { return }
        guard FHIRPrimitive.isValidID(id) else { throw FHIRError(.invalid, code: "value", "'\(id)' is not a valid id", at: "Binary.id") }
        guard let record = try await store.read(ResourceKey("Binary", id)), !record.deleted else { return }
        try await writePipeline.checkMayChange(record, .update)
        if let ifMatch, ifMatch != record.version {
            throw FHIRError(.preconditionFailed, code: "conflict", "Version conflict on Binary/\(id): If-Match expected version \(ifMatch), current is \(record.version)")
        }
    }

    /// `write` (the Binary's create or update) with the received stream as its document; the
    /// commit of the version naming it settles it (`PreparedWrite.namesStream`). A write refused
    /// before its commit (invalid, forbidden, a conflict: a client error) discards the stream;
    /// after any other error it is kept pending, for the sweep (`DocumentStreamSweep`), rather
    /// than risk removing a stream a committed version names.
    public func writeStreamed(_ pending: StreamedDocument.Pending, _ write: () async throws -> InteractionResult) async throws -> InteractionResult {
        let result: InteractionResult
        do {
            result = try await StreamedDocument.$pending.withValue(pending) { try await write() }
        } catch let error as FHIRError where (400..<500).contains(error.category.restStatus) {
            await store.documentStreams.discard(pending.reference.id)
            throw error
        }
        // A conditional create that found its match wrote nothing: the stream is no one's. Only
        // a version read back that names another stream, or none, lets it go.
        if let key = result.key, let version = result.version, let record = try? await store.vread(key, version: version),
           let content = record.content, (Self.streamToken(in: content).flatMap { pipeline.protection?.streamReference(token: $0) })?.id != pending.reference.id {
            await store.documentStreams.discard(pending.reference.id)
        }
        return result
    }

    /// The token a stored Binary's `_data` holds when it may name a stream, found without parsing
    /// the rest of it; nil when it holds `data`, nothing sealed, or a sealed document (a `_data`
    /// longer than a stream's reference ever is: not decoded and tried only to fail).
    static func streamToken(in content: ByteBuffer) -> String? {
        content.withUnsafeReadableBytes { bytes -> String? in
            guard IdentifierProtection.holdsEncrypted(bytes), let members = JSONMembers.members(in: bytes),
                  !members.contains(where: { $0.key == "data" }),
                  let sealed = members.first(where: { $0.key == "_data" && !$0.string }), sealed.range.count <= 4096,
                  let primitive = try? JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[sealed.range])) else { return nil }
            return IdentifierProtection.encryptedToken(in: primitive)
        }
    }

    /// The stream a stored Binary's document is kept in, ready to be read (nil: it has none).
    func documentStream(_ record: ResourceRecord) async throws -> DocumentStreamRead? {
        guard record.key.type == "Binary", let protection = pipeline.protection, let content = record.content,
              let token = Self.streamToken(in: content), let reference = protection.streamReference(token: token) else { return nil }
        let streams = store.documentStreams
        guard let stored = try await streams.size(reference.id) else {
            throw StoreError.storage("\(record.key) names document stream \(reference.id), which is missing")
        }
        let head = try await streams.read(reference.id, offset: 0, count: min(stored, IdentifierProtection.streamHeaderMaximum))
        guard let opener = protection.streamOpener(header: head, id: reference.id) else {
            throw StoreError.storage("Document stream \(reference.id) of \(record.key) does not open (another keyring, or altered)")
        }
        guard stored == IdentifierProtection.sealedStreamSize(document: reference.size, header: opener.header.count) else {
            throw StoreError.storage("Document stream \(reference.id) of \(record.key) has \(stored) bytes, not those of a \(reference.size)-byte document")
        }
        return DocumentStreamRead(reference: reference, opener: opener, streams: streams, stored: stored)
    }

    /// A Binary read as FHIR JSON whose document is a stream: the document inlined as `data` when
    /// it is within the body limit (what a client could have sent as JSON); above it, the Binary
    /// shows where the document is read (`stored-document`), as in searches and history.
    func inliningStream(_ record: ResourceRecord, _ presented: InteractionResult) async throws -> InteractionResult {
        guard let stream = try await documentStream(record), stream.reference.size <= pipeline.maxBodyBytes / 4 * 3,
              let content = presented.content, case .object(let binary)? = try? JSONParser.parse(content.readableBytesView) else { return presented }
        // The Binary without `_data`, then `"data":"…"` written as the document is opened: its
        // base64 goes straight into the response's buffer, and no other copy of it is held.
        let head = JSONWriter.bytes(.object(JSONObject(binary.members.filter { $0.key != "_data" })))
        var out = ByteBufferAllocator().buffer(capacity: head.count + 12 + Base64.encodedCount(stream.reference.size))
        out.writeBytes(head.dropLast())
        out.writeString(head.count > 2 ? #","data":""# : #""data":""#)
        var carry: [UInt8] = []
        try await stream.send { chunk in
            var bytes = carry + Array(chunk.readableBytesView)
            let whole = bytes.count / 3 * 3
            bytes.withUnsafeBytes { all in
                let piece = UnsafeRawBufferPointer(rebasing: all[..<whole])
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: Base64.encodedCount(whole)) { Base64.encode(piece, into: $0) }
            }
            bytes.removeFirst(whole)
            carry = bytes
        }
        carry.withUnsafeBytes { rest in
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: 4) { Base64.encode(rest, into: $0) }
        }
        out.writeString("\"}")
        var result = presented
        result.content = out
        return result
    }
}
