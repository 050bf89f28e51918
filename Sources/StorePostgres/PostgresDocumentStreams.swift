import Logging
import NIOCore
import PostgresNIO
import Store

/// The production store's document streams (ADR 029): rows of 1 MiB chunks in
/// `document_chunk`, and the stream's size in `document_stream` once it is whole. Each chunk is
/// its own statement, committed as it is written, so an upload holds one chunk in memory; the
/// size row is written last, so a stream without one is not whole (and reads as missing).
struct PostgresDocumentStreams: DocumentStreams {
    let client: PostgresClient
    let logger: Logger
    static let chunk = 1 << 20

    var db: PostgresExecutor { PostgresExecutor(target: .pool(client), logger: logger) }

    func create() async throws -> any DocumentStreamWriter {
        Writer(id: Self.newID(), db: db)
    }

    func size(_ id: String) async throws -> Int? {
        try await db.query("SELECT size FROM document_stream WHERE id = ?", [.text(id)]).first?[0].integer
    }

    func read(_ id: String, offset: Int, count: Int) async throws -> ByteBuffer {
        guard count > 0 else { return ByteBuffer() }
        let first = offset / Self.chunk, last = (offset + count - 1) / Self.chunk
        let rows = try await db.query("SELECT seq, bytes FROM document_chunk WHERE stream = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                                      [.text(id), .integer(first), .integer(last)])
        var out = ByteBufferAllocator().buffer(capacity: count)
        var expected = first
        for row in rows {
            guard row[0].integer == expected, var bytes = row[1].blob else {
                throw StoreError.storage("Document stream \(id) is missing its chunk \(expected)")
            }
            let start = expected == first ? offset - first * Self.chunk : 0
            guard start <= bytes.readableBytes else { break }
            bytes.moveReaderIndex(forwardBy: start)
            let take = min(bytes.readableBytes, count - out.readableBytes)
            out.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex, length: take)!)
            expected += 1
        }
        return out
    }

    func discard(_ id: String) async {
        _ = try? await db.query("DELETE FROM document_stream WHERE id = ?", [.text(id)])
        _ = try? await db.query("DELETE FROM document_chunk WHERE stream = ?", [.text(id)])
    }

    final class Writer: DocumentStreamWriter, @unchecked Sendable {
        // Appends and `finish` are called one at a time (the protocol's contract), never together.
        let id: String
        let db: PostgresExecutor
        var pending = ByteBuffer()
        var seq = 0
        var size = 0

        init(id: String, db: PostgresExecutor) {
            self.id = id
            self.db = db
        }

        func append(_ bytes: ByteBuffer) async throws {
            var bytes = bytes
            size += bytes.readableBytes
            while bytes.readableBytes > 0 {
                let take = min(bytes.readableBytes, PostgresDocumentStreams.chunk - pending.readableBytes)
                var slice = bytes.readSlice(length: take)!
                pending.writeBuffer(&slice)
                if pending.readableBytes == PostgresDocumentStreams.chunk { try await flush() }
            }
        }

        func flush() async throws {
            _ = try await db.query("INSERT INTO document_chunk (stream, seq, bytes) VALUES (?, ?, ?)",
                                   [.text(id), .integer(seq), .blob(pending)])
            seq += 1
            pending = ByteBuffer()
        }

        func finish() async throws -> Int {
            if pending.readableBytes > 0 { try await flush() }
            _ = try await db.query("INSERT INTO document_stream (id, size) VALUES (?, ?)", [.text(id), .integer(size)])
            return size
        }
    }
}
