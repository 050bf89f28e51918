import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Documents kept apart from their resource's JSON and written and read piece by piece (ADR 029):
/// a Binary sent in its own type above the streaming threshold (a scanned record, an imaging
/// report, a large CDA). The store keeps opaque bytes: the platform seals them before they come
/// here (`DocumentStreamSealing`), and the Binary's stored JSON names the stream in a sealed token.
///
/// A stream is written before the version naming it commits, and durable when `finish` returns,
/// so a committed version never names a stream that is not whole. A write that fails after the
/// stream was made discards it.
///
/// A stream is *pending* from `create` until the commit of the first version naming it
/// (`PreparedWrite.namesStream`), which removes its pending mark in the same transaction and
/// fails if the mark is gone; or until `discard`. So a pending stream is never named by a
/// committed version. One left pending — the server killed during the upload or between `finish`
/// and the commit, a write that failed on a server error — is found by `pending(idleFor:)` once
/// nothing has been written to it for a while, and removed by the platform's sweep
/// (`DocumentStreamSweep`) through `discardIdle`.
public protocol DocumentStreams: Sendable {
    /// A new stream, appended to in order; pending until a version naming it commits.
    func create() async throws -> any DocumentStreamWriter
    /// The size in bytes of stored stream `id`; nil when there is none.
    func size(_ id: String) async throws -> Int?
    /// Up to `count` bytes of stream `id` from `offset` (fewer at its end).
    func read(_ id: String, offset: Int, count: Int) async throws -> ByteBuffer
    /// Removes a stream that no committed version names (its write failed).
    func discard(_ id: String) async
    /// The pending streams nothing was written to for at least `seconds`.
    func pending(idleFor seconds: Int) async throws -> [PendingStream]
    /// Removes stream `id` if it is still pending and still nothing was written to it for
    /// `seconds` (an upload that resumed keeps it); whether it was removed. Its mark goes first,
    /// atomically with the check: a version naming it then fails to commit, and a writer still
    /// holding it fails at its next chunk or at `finish`.
    func discardIdle(_ id: String, idleFor seconds: Int) async throws -> Bool
    /// Refuses (`StoreError.insufficientStorage`) a document of `bytes` that would take the
    /// store's disk below its reserve; a writer checks again as it writes.
    func ensureRoom(for bytes: Int) async throws
}

extension DocumentStreams {
    /// A store that cannot see its disk (PostgreSQL's is the database server's) refuses nothing.
    public func ensureRoom(for bytes: Int) async throws {}
}

/// A pending stream and the time of its last write (seconds since the epoch).
public struct PendingStream: Sendable, Hashable {
    public let id: String
    public let lastWrite: Int

    public init(id: String, lastWrite: Int) {
        self.id = id
        self.lastWrite = lastWrite
    }
}

public protocol DocumentStreamWriter: Sendable {
    var id: String { get }
    /// Appends bytes; called one at a time.
    func append(_ bytes: ByteBuffer) async throws
    /// Makes the stream durable; returns its size. A version naming it may commit after.
    func finish() async throws -> Int
}

extension DocumentStreams {
    /// A new stream's name: 128 random bits in hex (never chosen by a client).
    package static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    /// Whether `id` has the form of a stream's name (nothing else reaches a file path or a query).
    package static func isStreamID(_ id: String) -> Bool {
        id.utf8.count == 32 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// Where a store keeps its streams' pending marks: in the database, where the commit of a
/// version naming a stream removes its mark in the same transaction (the SQLite store: through
/// its writer, so a commit and a sweep's removal never interleave).
protocol StreamMarks: Sendable {
    /// Marks `id` pending, made at `time` (seconds since the epoch).
    func mark(_ id: String, at time: Int) async throws
    func marked() async throws -> [(id: String, created: Int)]
    /// Removes the mark of `id` if there is one and `condition` (given the mark's time) holds,
    /// atomically with the commits; whether it did. `condition` may act before the mark goes.
    func unmark(_ id: String, if condition: @escaping @Sendable (_ created: Int) throws -> Bool) async throws -> Bool
}

extension SQLiteWriter: StreamMarks {}

/// The embedded store's streams: one file each, `<database>-content/streams/<first two>/<id>`,
/// written and read on NIO's blocking-I/O pool; pending marks in the database
/// (`document_stream_pending`). A stream's last write is its file's modification time.
/// Durable (data, and with `durable` the directories too) before `finish` returns, whatever the
/// store's durability: a version that survives a power loss must not name a stream that did not
/// (as for ADR 025's content files).
public struct FileDocumentStreams: DocumentStreams {
    /// The store's content folder (ADR 025); the streams are in its `streams` folder.
    let content: String
    let folder: String
    let durable: Bool
    /// Nil for a tool that only reads or copies streams.
    let marks: (any StreamMarks)?
    /// Free bytes on the disk that streams never take: the database beside them keeps room to
    /// commit (SQLite fails every write once its disk is full).
    let reserve: Int

    init(contentFolder: String, durable: Bool, marks: (any StreamMarks)?, reserve: Int = 0) {
        self.content = contentFolder
        self.folder = contentFolder + "/streams"
        self.durable = durable
        self.marks = marks
        self.reserve = reserve
    }

    /// Free bytes an unprivileged writer may use on the disk holding `path` (or the descriptor).
    static func available(path: String? = nil, fd: Int32? = nil) -> Int? {
        var info = statvfs()
        let status = fd.map { fstatvfs($0, &info) } ?? path.map { statvfs($0, &info) } ?? -1
        guard status == 0 else { return nil }
        return Int(info.f_bavail) &* Int(info.f_frsize)
    }

    static func refusal(_ bytes: Int, available: Int?, reserve: Int) -> StoreError {
        .insufficientStorage("The document store's disk has \(available.map(String.init) ?? "no") bytes free and keeps \(reserve)"
                             + " in reserve: no room for \(bytes) more bytes of document")
    }

    public func ensureRoom(for bytes: Int) async throws {
        guard reserve > 0 else { return }
        let (content, reserve) = (self.content, self.reserve)
        try await NIOThreadPool.singleton.runIfActive {
            // The nearest folder that exists: the content folder is made with the first stream.
            let probe = FileManager.default.fileExists(atPath: content) ? content : (content as NSString).deletingLastPathComponent
            guard let available = Self.available(path: probe.isEmpty ? "." : probe) else {
                throw StoreError.storage("Cannot read the free space of \(probe): \(Files.errorText())")
            }
            if available - bytes < reserve { throw Self.refusal(bytes, available: available, reserve: reserve) }
        }
    }

    func path(_ id: String) throws -> (directory: String, file: String) {
        guard Self.isStreamID(id) else { throw StoreError.storage("'\(id)' does not name a document stream") }
        let directory = folder + "/" + id.prefix(2)
        return (directory, directory + "/" + id)
    }

    public func create() async throws -> any DocumentStreamWriter {
        let id = Self.newID()
        let (directory, file) = try path(id)
        // The mark first: a stream never exists unmarked before its version commits.
        try await marks?.mark(id, at: time(nil))
        let (content, folder, durable) = (self.content, self.folder, self.durable)
        let fd = try await NIOThreadPool.singleton.runIfActive {
            let parent = String(content[..<(content.lastIndex(of: "/") ?? content.startIndex)])
            try Files.makeDirectory(content, fsyncParent: durable ? (parent.isEmpty ? "." : parent) : nil)
            try Files.makeDirectory(folder, fsyncParent: durable ? content : nil)
            try Files.makeDirectory(directory, fsyncParent: durable ? folder : nil)
            let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StoreError.storage("Cannot create \(file): \(Files.errorText())") }
            return fd
        }
        return FileWriter(id: id, fd: fd, path: file, directory: durable ? directory : nil, reserve: reserve)
    }

    public func size(_ id: String) async throws -> Int? {
        let file = try path(id).file
        return try await NIOThreadPool.singleton.runIfActive {
            var info = stat()
            guard stat(file, &info) == 0 else {
                if errno == ENOENT { return nil }
                throw StoreError.storage("Cannot stat \(file): \(Files.errorText())")
            }
            return Int(info.st_size)
        }
    }

    public func read(_ id: String, offset: Int, count: Int) async throws -> ByteBuffer {
        let file = try path(id).file
        return try await NIOThreadPool.singleton.runIfActive {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw StoreError.storage("A document stream is missing: \(file): \(Files.errorText())") }
            defer { close(fd) }
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            var done = 0
            while done < count {
                var n = 0
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count - done) { out in
                    n = pread(fd, out.baseAddress!, count - done, off_t(offset + done))
                    return max(n, 0)
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.storage("Cannot read \(file): \(Files.errorText())")
                }
                if n == 0 { break }
                done += n
            }
            return buffer
        }
    }

    /// The ids of the streams in the folder (`huitong export --to postgres` copies them all).
    package func storedIDs() throws -> [String] {
        let manager = FileManager.default
        guard manager.fileExists(atPath: folder) else { return [] }
        return try manager.contentsOfDirectory(atPath: folder).sorted().flatMap { directory in
            try manager.contentsOfDirectory(atPath: folder + "/" + directory).filter(Self.isStreamID).sorted()
        }
    }

    public func discard(_ id: String) async {
        guard let file = try? path(id).file else { return }
        guard let marks else {
            _ = try? await NIOThreadPool.singleton.runIfActive { unlink(file) }
            return
        }
        // Only a stream still pending: never one a committed version names.
        _ = try? await marks.unmark(id) { _ in try Self.remove(file) }
    }

    /// The ids of the pending streams (`huitong export --to postgres` copies them pending).
    package func pendingIDs() async throws -> Set<String> {
        Set(try await marks?.marked().map(\.id) ?? [])
    }

    /// The time of the last write of stream `id` (seconds since the epoch); nil when it has no
    /// file (the server stopped between its mark and its file, or it was being removed: its
    /// mark's time counts then).
    static func lastWrite(_ file: String) throws -> Int? {
        var info = stat()
        guard stat(file, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw StoreError.storage("Cannot stat \(file): \(Files.errorText())")
        }
        #if canImport(Darwin)
        return info.st_mtimespec.tv_sec
        #else
        return info.st_mtim.tv_sec
        #endif
    }

    static func remove(_ file: String) throws -> Bool {
        guard unlink(file) == 0 || errno == ENOENT else { throw StoreError.storage("Cannot remove \(file): \(Files.errorText())") }
        return true
    }

    public func pending(idleFor seconds: Int) async throws -> [PendingStream] {
        guard let marks else { return [] }
        let files = try await marks.marked().map { ($0.id, $0.created, try path($0.id).file) }
        return try await NIOThreadPool.singleton.runIfActive {
            let now = time(nil)
            return try files.compactMap { id, created, file in
                let written = try Self.lastWrite(file) ?? created
                return now - written >= seconds ? PendingStream(id: id, lastWrite: written) : nil
            }
        }
    }

    public func discardIdle(_ id: String, idleFor seconds: Int) async throws -> Bool {
        guard let marks else { return false }
        let file = try path(id).file
        // Checked, removed and unmarked on the writer's thread: no commit runs in between. The file
        // goes before the mark, so a failure or a crash in between leaves a mark to try again.
        return try await marks.unmark(id) { created in
            guard time(nil) - (try Self.lastWrite(file) ?? created) >= seconds else { return false }
            return try Self.remove(file)
        }
    }

    final class FileWriter: DocumentStreamWriter, @unchecked Sendable {
        // Appends and `finish` are called one at a time (the protocol's contract), never together.
        let id: String
        let fd: Int32
        let path: String
        let directory: String?
        let reserve: Int
        var size = 0
        var closed = false

        init(id: String, fd: Int32, path: String, directory: String?, reserve: Int) {
            self.id = id
            self.fd = fd
            self.path = path
            self.directory = directory
            self.reserve = reserve
        }

        deinit { if !closed { close(fd) } }

        func append(_ bytes: ByteBuffer) async throws {
            let (id, fd, path, reserve) = (self.id, self.fd, self.path, self.reserve)
            try await NIOThreadPool.singleton.runIfActive {
                // Removed as abandoned while this upload stood idle: refused at once.
                var info = stat()
                if fstat(fd, &info) == 0 && info.st_nlink == 0 { throw StoreError.streamRemoved(id) }
                if reserve > 0, let available = FileDocumentStreams.available(fd: fd), available - bytes.readableBytes < reserve {
                    throw FileDocumentStreams.refusal(bytes.readableBytes, available: available, reserve: reserve)
                }
                do {
                    try bytes.withUnsafeReadableBytes { try Files.writeAll(fd, $0, path: path) }
                } catch {
                    // The disk full after all (no reserve, a quota the free space does not show).
                    if errno == ENOSPC || errno == EDQUOT { throw FileDocumentStreams.refusal(bytes.readableBytes, available: nil, reserve: reserve) }
                    throw error
                }
            }
            size += bytes.readableBytes
        }

        func finish() async throws -> Int {
            let (id, fd, path, directory) = (self.id, self.fd, self.path, self.directory)
            closed = true
            try await NIOThreadPool.singleton.runIfActive {
                let synced = fdatasync(fd) == 0
                let failure = synced ? nil : Files.errorText()
                // The file written is still the one at its path: the sweep did not remove it
                // while this upload stood idle (`discardIdle`).
                var written = stat(), named = stat()
                let removed = fstat(fd, &written) != 0 || stat(path, &named) != 0
                    || written.st_ino != named.st_ino || written.st_dev != named.st_dev
                close(fd)
                if let failure { throw StoreError.storage("Cannot fsync \(path): \(failure)") }
                if removed { throw StoreError.streamRemoved(id) }
                if let directory { try Files.fsyncDirectory(directory) }
            }
            return size
        }
    }
}
