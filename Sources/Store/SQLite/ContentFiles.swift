import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Stored versions of 100 KB or more (a document's `Binary`, a resource with a large inline
/// attachment) are kept in files beside the SQLite database, one per version, and the history
/// row holds a marker naming the file (ADR 025). Such content was written twice in the row —
/// into the WAL at commit, into the database at the checkpoint — and copied through SQLite's
/// overflow pages both times; in a file it is written once. SQLite's own measurements
/// ("Internal Versus External BLOBs") put the crossover near 100 KB.
///
/// A file is named by its history row id and written before the commit that inserts the row,
/// so no reader sees a marker before its file is whole. A batch that rolls back gives its row
/// ids to the next batch, which overwrites the files; after a crash between a file's write and
/// the commit the same happens at the next start (row ids continue from the highest stored).
/// Each file's data is fsynced before the commit, whatever the durability (a power loss must not
/// keep a row whose file it lost); with `durable` (`--durability full`) its directory too. The
/// marker holds the size: a file that is not whole is an error when read.
///
/// The readers resolve a marker where SQLite hands out a blob (`SQLiteRawConnection.column`,
/// the point reads): everything above the store sees the exact bytes as before.
struct ContentFiles: Sendable {
    let folder: String
    /// Directories fsynced too, as each file is (`--durability full`).
    let durable: Bool
    /// Content of this many bytes or more goes to a file.
    let threshold: Int

    static let defaultThreshold = 100_000

    /// What a history row's content starts with when the content is in a file; no JSON starts with NUL.
    static let marker: [UInt8] = Array("\u{0}huitong:content-file:".utf8)

    init(folder: String, durable: Bool, threshold: Int = ContentFiles.defaultThreshold) {
        self.folder = folder
        self.durable = durable
        self.threshold = threshold
    }

    /// The file of history row `hid`, relative to `folder`: 4,096 to a directory.
    static func name(hid: Int) -> String { "\(hid / 4096)/\(hid)" }

    /// A file written and not yet on disk (`store`), made durable by `sync` before the commit.
    struct Written {
        let fd: Int32
        let path: String
        let directory: String
    }

    /// Writes `content` to the file of `hid` and starts its writeback; returns the marker to store
    /// in its row, and the file, which `sync` must be given before the batch commits.
    func store(hid: Int, _ content: [UInt8]) throws -> (marker: [UInt8], file: Written) {
        let name = Self.name(hid: hid)
        let directory = folder + "/" + String(hid / 4096)
        let parent = String(folder[..<(folder.lastIndex(of: "/") ?? folder.startIndex)])
        try Self.makeDirectory(folder, fsyncParent: durable ? (parent.isEmpty ? "." : parent) : nil)
        try Self.makeDirectory(directory, fsyncParent: durable ? folder : nil)
        let path = folder + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.storage("Cannot create \(path): \(Self.errorText())") }
        do {
            try content.withUnsafeBytes { try Files.writeAll(fd, $0, path: path) }
        } catch {
            close(fd)
            throw error
        }
        // The disk starts on it now; `sync` waits for all of a batch's files together.
        _ = Self.startWriteback?(fd, 0, 0, 2 /* SYNC_FILE_RANGE_WRITE */)
        return (Self.marker + Array("\(content.count) \(name)".utf8), Written(fd: fd, path: path, directory: directory))
    }

    /// Makes the files of a batch durable and closes them. Their bytes reach the disk before their
    /// rows can: even without fsynced commits (`synchronous=NORMAL`) the WAL's pages may be written
    /// back, and a row that survives a power loss must not name a file that did not. Closes every
    /// file, also when one fails.
    func sync(_ files: [Written]) throws {
        var failure: StoreError?
        for file in files {
            if failure == nil, fdatasync(file.fd) != 0 { failure = .storage("Cannot fsync \(file.path): \(Self.errorText())") }
            if close(file.fd) != 0, failure == nil { failure = .storage("Cannot write \(file.path): \(Self.errorText())") }
        }
        if let failure { throw failure }
        if durable {
            for directory in Set(files.map(\.directory)) { try Self.fsyncDirectory(directory) }
        }
    }

    /// `sync_file_range` (Linux; Glibc's module does not export it): starts writing a file's dirty
    /// pages without waiting, so that a batch's files go to the disk together.
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    private static let startWriteback: SyncFileRange? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range")
        .map { unsafeBitCast($0, to: SyncFileRange.self) }

    /// The size and relative file name a stored content names, when it is a marker (`<size> <name>`).
    static func file(_ content: UnsafeRawBufferPointer) -> (size: Int, name: String)? {
        guard content.count > marker.count, content[0] == 0,
              marker.withUnsafeBytes({ memcmp($0.baseAddress!, content.baseAddress!, marker.count) == 0 }) else { return nil }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: content[marker.count...]), as: UTF8.self)
        guard let space = text.firstIndex(of: " "), let size = Int(text[..<space]) else { return nil }
        return (size, String(text[text.index(after: space)...]))
    }

    /// The stored bytes of `content`: itself, or the file its marker names (which must hold the
    /// size the marker says: a file cut short is an error, never a shorter resource).
    func resolve(_ content: UnsafeRawBufferPointer) throws -> ByteBuffer {
        guard let (expected, name) = Self.file(content) else { return ByteBuffer(bytes: content) }
        let path = folder + "/" + name
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.storage("A stored version's content file is missing: \(path): \(Self.errorText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError.storage("Cannot stat \(path): \(Self.errorText())") }
        let size = Int(info.st_size)
        guard size == expected else {
            throw StoreError.storage("A stored version's content file has \(size) bytes, not \(expected): \(path)")
        }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        var done = 0
        while done < size {
            var n = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size - done) { out in
                n = read(fd, out.baseAddress!, min(out.count, size - done))
                return max(n, 0)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.storage("Cannot read \(path): \(Self.errorText())")
            }
            guard n > 0 else { throw StoreError.storage("\(path) is shorter than it was (\(done) of \(size) bytes)") }
            done += n
        }
        return buffer
    }

    private static func errorText() -> String { Files.errorText() }
    private static func makeDirectory(_ path: String, fsyncParent parent: String?) throws { try Files.makeDirectory(path, fsyncParent: parent) }
    private static func fsyncDirectory(_ path: String) throws { try Files.fsyncDirectory(path) }
}

/// Directory and error helpers of the store's own files (content files, document streams).
enum Files {
    static func makeDirectory(_ path: String, fsyncParent parent: String?) throws {
        if mkdir(path, 0o700) == 0 {
            if let parent { try fsyncDirectory(parent) }
        } else if errno != EEXIST {
            throw StoreError.storage("Cannot create \(path): \(errorText())")
        }
    }

    static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.storage("Cannot open \(path): \(errorText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError.storage("Cannot fsync \(path): \(errorText())") }
    }

    /// Writes all of `buffer` to `fd` (retrying short and interrupted writes).
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < buffer.count {
            let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.storage("Cannot write \(path): \(errorText())")
            }
            offset += n
        }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
