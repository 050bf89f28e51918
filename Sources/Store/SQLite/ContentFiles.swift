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
/// With `durable` (`--durability full`) each file and its directory are fsynced before the
/// commit; otherwise a file is in the page cache when the commit returns, which a killed
/// process cannot lose, as a `synchronous=NORMAL` commit.
///
/// The readers resolve a marker where SQLite hands out a blob (`SQLiteRawConnection.column`,
/// the point reads): everything above the store sees the exact bytes as before.
struct ContentFiles: Sendable {
    let folder: String
    /// Each file and its directory fsynced before the commit (`--durability full`).
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

    /// Writes `content` to the file of `hid` and returns the marker to store in its row.
    func store(hid: Int, _ content: [UInt8]) throws -> [UInt8] {
        let name = Self.name(hid: hid)
        let directory = folder + "/" + String(hid / 4096)
        try Self.makeDirectory(folder, fsyncParent: nil)
        try Self.makeDirectory(directory, fsyncParent: durable ? folder : nil)
        let path = folder + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.storage("Cannot create \(path): \(Self.errorText())") }
        defer { close(fd) }
        try content.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.storage("Cannot write \(path): \(Self.errorText())")
                }
                offset += n
            }
        }
        if durable {
            guard fsync(fd) == 0 else { throw StoreError.storage("Cannot fsync \(path): \(Self.errorText())") }
            try Self.fsyncDirectory(directory)
        }
        return Self.marker + Array(name.utf8)
    }

    /// The relative file name a stored content names, when it is a marker.
    static func fileName(_ content: UnsafeRawBufferPointer) -> String? {
        guard content.count > marker.count, content[0] == 0,
              marker.withUnsafeBytes({ memcmp($0.baseAddress!, content.baseAddress!, marker.count) == 0 }) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: content[marker.count...]), as: UTF8.self)
    }

    /// The stored bytes of `content`: itself, or the file its marker names.
    func resolve(_ content: UnsafeRawBufferPointer) throws -> ByteBuffer {
        guard let name = Self.fileName(content) else { return ByteBuffer(bytes: content) }
        let path = folder + "/" + name
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.storage("A stored version's content file is missing: \(path): \(Self.errorText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError.storage("Cannot stat \(path): \(Self.errorText())") }
        let size = Int(info.st_size)
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

    private static func makeDirectory(_ path: String, fsyncParent parent: String?) throws {
        if mkdir(path, 0o700) == 0 {
            if let parent { try fsyncDirectory(parent) }
        } else if errno != EEXIST {
            throw StoreError.storage("Cannot create \(path): \(errorText())")
        }
    }

    private static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.storage("Cannot open \(path): \(errorText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError.storage("Cannot fsync \(path): \(errorText())") }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
