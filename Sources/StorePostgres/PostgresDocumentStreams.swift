import Logging
import NIOCore
import PostgresNIO
import Store

/// The production store's document streams (ADR 029): rows of 1 MiB chunks in
/// `document_chunk`, and the stream's size in `document_stream` once it is whole. Each chunk is
/// its own statement, committed as it is written, so an upload holds one chunk in memory; the
/// size row is written last, so a stream without one is not whole (and reads as missing). A
/// pending stream has a row in `document_stream_pending`, its time the last chunk's (the
/// database's clock; a live upload refreshes it at least every 1 MiB); a chunk or size row is
/// written only while that row is there, and the commit of the version naming the stream
/// deletes it (`PostgresWriter`).
struct PostgresDocumentStreams: DocumentStreams {
    let client: PostgresClient
    let logger: Logger
    static let chunk = 1 << 20

    var db: PostgresExecutor { PostgresExecutor(target: .pool(client), logger: logger) }

    func create() async throws -> any DocumentStreamWriter {
        try await create(id: Self.newID())
    }

    /// A new pending stream named `id` (an export keeps the SQLite stream's name).
    func create(id: String) async throws -> Writer {
        _ = try await db.query("INSERT INTO document_stream_pending (id) VALUES (?)", [.text(id)])
        return Writer(id: id, db: db)
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
        _ = try? await removed(id, condition: "")
    }

    /// Removes stream `id` whether pending or not (a failed export's partial copy).
    func discardCopy(_ id: String) async throws {
        _ = try await removed(id, condition: nil)
    }

    /// Stream `id` named by a version copied by `huitong export`: no longer pending.
    func settle(_ id: String) async throws {
        _ = try await db.query("DELETE FROM document_stream_pending WHERE id = ?", [.text(id)])
    }

    func pending(idleFor seconds: Int) async throws -> [PendingStream] {
        try await db.query("SELECT id, floor(extract(epoch FROM touched_at))::bigint FROM document_stream_pending"
                           + " WHERE touched_at <= now() - make_interval(secs => ?) ORDER BY id", [.integer(seconds)]).compactMap { row in
            guard let id = row[0].text, let written = row[1].integer else { return nil }
            return PendingStream(id: id, lastWrite: written)
        }
    }

    func discardIdle(_ id: String, idleFor seconds: Int) async throws -> Bool {
        try await removed(id, condition: " AND touched_at <= now() - make_interval(secs => \(seconds))")
    }

    /// Removes stream `id` in one transaction, its pending mark first (with `condition` on it:
    /// nothing is removed unless the mark was: never a stream a committed version names), so a
    /// writer's next chunk and a version naming it find none. A nil condition removes it whatever
    /// its mark (`discardCopy`).
    private func removed(_ id: String, condition: String?) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let tx = PostgresExecutor(target: .connection(connection), logger: logger)
            let marked = try await tx.query("DELETE FROM document_stream_pending WHERE id = ?\(condition ?? "") RETURNING id", [.text(id)])
            guard !marked.isEmpty || condition == nil else { return false }
            _ = try await tx.query("DELETE FROM document_stream WHERE id = ?", [.text(id)])
            _ = try await tx.query("DELETE FROM document_chunk WHERE stream = ?", [.text(id)])
            return true
        }
    }

    final class Writer: DocumentStreamWriter, @unchecked Sendable {
        // Appends and `finish` are called one at a time (the protocol's contract), never together.
        let id: String
        let db: PostgresExecutor
        var pending = ByteBuffer()
        var seq = 0
        var size = 0
        /// Set by `huitong export` for a stream a copied version names: `finish` settles it.
        var settling = false

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
            let written = try await db.query("WITH mark AS (UPDATE document_stream_pending SET touched_at = now() WHERE id = ? RETURNING id)"
                                             + " INSERT INTO document_chunk (stream, seq, bytes) SELECT id, ?, ? FROM mark RETURNING seq",
                                             [.text(id), .integer(seq), .blob(pending)])
            guard !written.isEmpty else { throw StoreError.streamRemoved(id) }
            seq += 1
            pending = ByteBuffer()
        }

        func finish() async throws -> Int {
            if pending.readableBytes > 0 { try await flush() }
            // The mark is locked until this statement ends, so no sweep removes it in between. A
            // copy of a stream already named (`huitong export`) is settled in the same statement.
            let mark = settling ? "DELETE FROM document_stream_pending WHERE id = ? RETURNING id"
                : "UPDATE document_stream_pending SET touched_at = now() WHERE id = ? RETURNING id"
            let written = try await db.query("WITH mark AS (\(mark)) INSERT INTO document_stream (id, size) SELECT id, ? FROM mark RETURNING id",
                                             [.text(id), .integer(size)])
            guard !written.isEmpty else { throw StoreError.streamRemoved(id) }
            return size
        }
    }
}
