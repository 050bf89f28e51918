#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import Synchronization

/// Audit events of reads, durable before the response and cheap: an audit-only unit is copied
/// into a spool file mapped into memory (no system call; once copied it survives the process
/// being killed, as a `synchronous=NORMAL` commit does; with `--durability full` the pages are
/// also synced) and moved into the hash chain about once a second, thousands per transaction.
/// On open, events a crash left in the spool are moved first; the last segment moved is saved in
/// the same transaction as its events, so none is moved twice.
final class AuditSpool: Sendable {
    private struct State {
        var file: Segment
        /// The oldest segment whose events are not in the chain yet.
        var oldest: Int
        var pending: [AuditRecord] = []
        var moveScheduled = false
        var closed = false
    }

    let folder: String
    let fsyncEach: Bool
    let writer: SQLiteWriter
    let logger: Logger
    private let state: Mutex<State>
    /// Serializes moves (a flush and the scheduled move must not interleave).
    private let moving = AsyncMutex()
    static let marker = (kind: "audit-spool", id: "moved")
    let tuning: Tuning
    /// Pending events beyond which a move starts at once (a bound on memory: ~0.5 KB each).
    static let movePending = 16_384

    struct Tuning: Sendable {
        /// How long an append waits for others to join its move. Each move is a commit, and a
        /// commit makes every reader connection drop its page cache: once a second instead of
        /// every 10 ms took audited read-by-id from 0.73 to 0.79 of the unaudited server.
        var gather: Duration = .seconds(1)
        /// A segment's mapped size; a file that is not filled takes only the pages written.
        var segmentBytes = 32 << 20
    }

    /// Opens the spool in `folder`, first moving whatever a previous process left there.
    static func open(folder: String, fsync: Bool, writer: SQLiteWriter, movedSegment: Int, tuning: Tuning = Tuning(),
                     logger: Logger) async throws -> AuditSpool {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let segments = try Self.segments(in: folder)
        var leftover: [AuditRecord] = []
        for n in segments where n > movedSegment {
            leftover += try Self.readFrames(Self.path(folder, n))
        }
        if let last = segments.last, !leftover.isEmpty {
            var unit = WriteUnit(writes: [])
            unit.audit = leftover
            unit.records = [RecordWrite(PlatformRecord(kind: marker.kind, id: marker.id, content: String(last)))]
            _ = try await writer.submit(unit)
            logger.info("Moved \(leftover.count) audit events left in the spool into the audit chain")
        }
        for n in segments { unlink(Self.path(folder, n)) }
        let next = max(segments.last ?? 0, movedSegment) + 1
        let file = try Segment(path: Self.path(folder, next), number: next, bytes: tuning.segmentBytes, fsync: fsync)
        return AuditSpool(folder: folder, fsync: fsync, writer: writer, file: file, tuning: tuning, logger: logger)
    }

    private init(folder: String, fsync: Bool, writer: SQLiteWriter, file: sending Segment, tuning: Tuning, logger: Logger) {
        self.folder = folder
        self.tuning = tuning
        self.fsyncEach = fsync
        self.writer = writer
        self.logger = logger
        self.state = Mutex(State(file: file, oldest: file.number))
    }

    /// Makes `records` durable in the spool; they reach the chain at the next move.
    func append(_ records: [AuditRecord]) throws {
        var frames: [UInt8] = []
        for r in records { Self.frame(r, into: &frames) }
        let (schedule, now) = try state.withLock { s throws -> (Bool, Bool) in
            guard !s.closed else { throw StoreError.storage("The store is closed") }
            if !s.file.fits(frames.count) {
                // The old segment stays on disk until a move has committed its events.
                let next = s.file.number + 1
                let file = try Segment(path: Self.path(folder, next), number: next,
                                       bytes: max(tuning.segmentBytes, frames.count), fsync: fsyncEach)
                s.file.close()
                s.file = file
            }
            try s.file.append(frames, sync: fsyncEach)
            s.pending += records
            let now = s.pending.count >= Self.movePending
            defer { s.moveScheduled = true }
            return (!s.moveScheduled || now, now)
        }
        if schedule {
            Task {
                if !now { try? await Task.sleep(for: self.tuning.gather) }
                do { try await self.move() } catch { self.logger.error("Moving audit events into the chain failed (they stay in the spool): \(error)") }
            }
        }
    }

    /// Moves every spooled event into the chain now (before audit reads, and on close).
    func flush() async throws {
        try await move()
    }

    private func move() async throws {
        try await moving.withLock {
            // Start a new segment; the old ones go once their events are committed.
            let (records, covered) = try state.withLock { s throws -> ([AuditRecord], ClosedRange<Int>?) in
                s.moveScheduled = false
                guard !s.pending.isEmpty else { return ([], nil) }
                let next = s.file.number + 1
                let file = try Segment(path: Self.path(folder, next), number: next, bytes: tuning.segmentBytes, fsync: fsyncEach)
                s.file.close()
                s.file = file
                defer { s.pending = []; s.oldest = next }
                return (s.pending, s.oldest...(next - 1))
            }
            guard !records.isEmpty, let covered else { return }
            var unit = WriteUnit(writes: [])
            unit.audit = records
            unit.records = [RecordWrite(PlatformRecord(kind: Self.marker.kind, id: Self.marker.id, content: String(covered.upperBound)))]
            do {
                _ = try await writer.submit(unit)
            } catch {
                // Back in line: the next move commits them with its own (its marker covers these segments).
                state.withLock { s in
                    s.pending = records + s.pending
                    s.oldest = covered.lowerBound
                }
                throw error
            }
            for n in covered { unlink(Self.path(folder, n)) }
        }
    }

    func close() async throws {
        try await flush()
        let last = state.withLock { s in
            s.closed = true
            s.file.close()
            return s.file.number
        }
        unlink(Self.path(folder, last))
    }

    // MARK: files

    static func path(_ folder: String, _ segment: Int) -> String { "\(folder)/\(segment).spool" }

    static func segments(in folder: String) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: folder)
            .compactMap { $0.hasSuffix(".spool") ? Int($0.dropLast(6)) : nil }.sorted()
    }

    /// `[length u32][check u32][recorded i64][patients u16 ([len u16][utf8])*][content]`,
    /// little-endian; `check` is FNV-1a of the body (a frame torn by power loss is detected).
    static func frame(_ r: AuditRecord, into out: inout [UInt8]) {
        var body: [UInt8] = []
        withUnsafeBytes(of: r.recorded.littleEndian) { body += $0 }
        withUnsafeBytes(of: UInt16(r.patients.count).littleEndian) { body += $0 }
        for p in r.patients {
            let bytes = Array(p.utf8)
            withUnsafeBytes(of: UInt16(bytes.count).littleEndian) { body += $0 }
            body += bytes
        }
        body += r.content
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { out += $0 }
        withUnsafeBytes(of: checksum(body[...]).littleEndian) { out += $0 }
        out += body
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var h: UInt32 = 0x811c_9dc5
        for b in bytes { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return h
    }

    /// The frames of a segment, up to the first that is absent (zero length: the file's unused
    /// tail) or torn (its append never returned, so no response relied on it).
    static func readFrames(_ path: String) throws -> [AuditRecord] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var records: [AuditRecord] = []
        var i = 0
        func integer<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: data[at..<at + MemoryLayout<T>.size]) }
            return T(littleEndian: v)
        }
        while i + 8 <= data.count {
            let length = Int(integer(UInt32.self, i))
            let end = i + 8 + length
            guard end <= data.count, length >= 10, checksum(data[(i + 8)..<end]) == integer(UInt32.self, i + 4) else { break }
            var j = i + 8
            let recorded = integer(Int64.self, j); j += 8
            let count = Int(integer(UInt16.self, j)); j += 2
            var patients: [String] = []
            for _ in 0..<count {
                guard j + 2 <= end else { break }
                let n = Int(integer(UInt16.self, j)); j += 2
                guard j + n <= end else { break }
                patients.append(String(decoding: data[j..<j + n], as: UTF8.self)); j += n
            }
            records.append(AuditRecord(recorded: recorded, content: Array(data[j..<end]), patients: patients))
            i = end
        }
        return records
    }
}

/// One spool file, sized up front and mapped: an append is a copy into the mapping. Used only
/// under the spool's lock. A frame's length word is copied last, and its checksum catches a
/// frame torn any other way.
private final class Segment {
    let number: Int
    private let fd: Int32
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    private var open = true

    init(path: String, number: Int, bytes: Int, fsync sync: Bool) throws {
        let fd = openDescriptor(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.storage("Cannot open the audit spool \(path): errno \(errno)") }
        guard ftruncate(fd, off_t(bytes)) == 0, !sync || fsync(fd) == 0 else {
            let e = errno
            closeDescriptor(fd)
            throw StoreError.storage("Cannot size the audit spool \(path): errno \(e)")
        }
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
              base != UnsafeMutableRawPointer(bitPattern: -1) else {
            let e = errno
            closeDescriptor(fd)
            throw StoreError.storage("Cannot map the audit spool \(path): errno \(e)")
        }
        self.number = number
        self.fd = fd
        self.base = base
        self.capacity = bytes
    }

    func fits(_ count: Int) -> Bool { used + count <= capacity }

    /// Copies `frames` (whole frames) in.
    func append(_ frames: [UInt8], sync: Bool) throws {
        precondition(open && fits(frames.count))
        let start = used
        frames.withUnsafeBytes { src in
            var i = 0
            while i < src.count {
                let length = src.loadUnaligned(fromByteOffset: i, as: UInt32.self)
                let frame = 8 + Int(UInt32(littleEndian: length))
                (base + start + i + 4).copyMemory(from: src.baseAddress! + i + 4, byteCount: frame - 4)
                (base + start + i).storeBytes(of: length, as: UInt32.self)
                i += frame
            }
        }
        used += frames.count
        if sync {
            let page = Int(getpagesize())
            let from = start / page * page
            guard msync(base + from, used - from, MS_SYNC) == 0 else {
                throw StoreError.storage("Syncing the audit spool failed: errno \(errno)")
            }
        }
    }

    func close() {
        guard open else { return }
        open = false
        munmap(base, capacity)
        closeDescriptor(fd)
    }

    deinit { close() }
}

// The C calls by other names: inside the class, `close` and `open` are its own methods.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
private func openDescriptor(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }

/// A lock for async code: one holder at a time, in arrival order.
final class AsyncMutex: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func withLock<T>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.locked = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
