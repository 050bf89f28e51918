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
/// also synced) and moved into the hash chain every few seconds, thousands per transaction.
/// On open, events a crash left in the spool are moved first; the last segment moved is saved in
/// the same transaction as its events, so none is moved twice.
final class AuditSpool: Sendable {
    private struct State {
        /// The segment appends go to.
        var file: Segment
        /// Filled segments whose events are not in the chain yet, oldest first.
        var filled: [Segment] = []
        /// Segments whose events are in the chain, kept for reuse: writing into pages that are
        /// mapped and cached already costs no page faults.
        var free: [Segment] = []
        /// Events in `filled` and `file`: they are read from there when moved, not kept twice.
        var pending = 0
        var moveScheduled = false
        var closed = false
    }

    let folder: String
    let fsyncEach: Bool
    let writer: SQLiteWriter
    let logger: Logger
    private let state: Mutex<State>
    /// The current segment's number, read without the lock to build frames before taking it.
    private let current: Atomic<Int>
    /// Serializes moves (a flush and the scheduled move must not interleave).
    private let moving = AsyncMutex()
    static let marker = (kind: "audit-spool", id: "moved")
    let tuning: Tuning
    /// Pending events beyond which a move starts at once (a bound on the move's transaction).
    static let movePending = 65_536

    struct Tuning: Sendable {
        /// How long an append waits for others to join its move. Each move is a commit, and a
        /// commit makes every reader connection drop its page cache: every 5 s instead of every
        /// 10 ms took audited read-by-id from 0.73 to 0.89 of the unaudited server (1 s: 0.82).
        var gather: Duration = .seconds(5)
        /// A segment's mapped size; a file that is not filled takes only the pages written.
        var segmentBytes = 64 << 20
    }

    /// Opens the spool in `folder`, first moving whatever a previous process left there.
    static func open(folder: String, fsync: Bool, writer: SQLiteWriter, movedSegment: Int, tuning: Tuning = Tuning(),
                     logger: Logger) async throws -> AuditSpool {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let segments = try Self.segments(in: folder)
        var leftover: [AuditRecord] = []
        for n in segments where n > movedSegment {
            leftover += try Self.readFrames(Self.path(folder, n), segment: n)
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
        if fsync { try syncFolder(folder) }
        return AuditSpool(folder: folder, fsync: fsync, writer: writer, file: file, tuning: tuning, logger: logger)
    }

    private init(folder: String, fsync: Bool, writer: SQLiteWriter, file: sending Segment, tuning: Tuning, logger: Logger) {
        self.folder = folder
        self.tuning = tuning
        self.fsyncEach = fsync
        self.writer = writer
        self.logger = logger
        self.current = Atomic(file.number)
        self.state = Mutex(State(file: file))
    }

    /// Makes `records` durable in the spool; they reach the chain at the next move.
    func append(_ records: [AuditRecord]) throws {
        let guess = current.load(ordering: .relaxed)
        var frames: [UInt8] = []
        for r in records { Self.frame(r, segment: guess, into: &frames) }
        let (schedule, now) = try state.withLock { s throws -> (Bool, Bool) in
            guard !s.closed else { throw StoreError.storage("The store is closed") }
            if !s.file.fits(frames.count) {
                // The filled segment stays on disk until a move has committed its events.
                s.filled.append(s.file)
                s.file = try nextSegment(&s, bytes: frames.count)
            }
            if s.file.number != guess {
                frames.removeAll(keepingCapacity: true)
                for r in records { Self.frame(r, segment: s.file.number, into: &frames) }
            }
            try s.file.append(frames, sync: fsyncEach)
            s.pending += records.count
            let now = s.pending >= Self.movePending
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

    /// The segment after the current one: a free one renamed (its old frames fail their
    /// checksums under the new number), or a new file.
    private func nextSegment(_ s: inout State, bytes: Int) throws -> Segment {
        let number = s.file.number + 1
        defer { current.store(number, ordering: .relaxed) }
        let file: Segment
        if let i = s.free.firstIndex(where: { $0.capacity >= bytes }) {
            file = s.free.remove(at: i)
            try file.reuse(from: Self.path(folder, file.number), as: Self.path(folder, number), number: number)
        } else {
            file = try Segment(path: Self.path(folder, number), number: number, bytes: max(tuning.segmentBytes, bytes), fsync: fsyncEach)
        }
        // With `--durability full` the file's name must survive power loss too: a segment found
        // under its old number after a restart would count as moved, and its events be lost.
        if fsyncEach { try Self.syncFolder(folder) }
        return file
    }

    static func syncFolder(_ folder: String) throws {
        let fd = openDescriptor(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw StoreError.storage("Cannot open the audit spool folder \(folder): errno \(errno)") }
        defer { closeDescriptor(fd) }
        guard fsync(fd) == 0 else { throw StoreError.storage("Cannot sync the audit spool folder \(folder): errno \(errno)") }
    }

    /// Moves every spooled event into the chain now (before audit reads, and on close).
    func flush() async throws {
        try await move()
    }

    private func move() async throws {
        try await moving.withLock {
            // Start the next segment; the ones written so far are free once their events are committed.
            let (count, covered) = try state.withLock { s throws -> (Int, [Segment]) in
                s.moveScheduled = false
                guard s.pending > 0 else { return (0, []) }
                let covered = s.filled + [s.file]
                s.file = try nextSegment(&s, bytes: 0)
                s.filled = []
                defer { s.pending = 0 }
                return (s.pending, covered)
            }
            guard let last = covered.last else { return }
            // The covered segments are no longer appended to, and stay mapped until put back
            // below: the writer reads their frames in place.
            var unit = WriteUnit(writes: [])
            unit.spooled = SpooledEvents(covered.map(\.written))
            unit.records = [RecordWrite(PlatformRecord(kind: Self.marker.kind, id: Self.marker.id, content: String(last.number)))]
            do {
                _ = try await writer.submit(unit)
            } catch {
                // Back in line: the next move commits them with its own (its marker covers these segments).
                state.withLock { s in
                    s.pending += count
                    s.filled = covered + s.filled
                }
                throw error
            }
            state.withLock { s in
                s.free += covered
                // Two segments alternate in steady state; more were only needed for a burst.
                while s.free.count > 2 {
                    let extra = s.free.removeFirst()
                    extra.close()
                    unlink(Self.path(folder, extra.number))
                }
            }
        }
    }

    func close() async throws {
        try await flush()
        let files = state.withLock { s in
            s.closed = true
            defer { s.free = []; s.filled = [] }
            return s.free + s.filled + [s.file]
        }
        for file in files {
            file.close()
            unlink(Self.path(folder, file.number))
        }
    }

    // MARK: files

    static func path(_ folder: String, _ segment: Int) -> String { "\(folder)/\(segment).spool" }

    static func segments(in folder: String) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: folder)
            .compactMap { $0.hasSuffix(".spool") ? Int($0.dropLast(6)) : nil }.sorted()
    }

    /// `[length u32][check u64][recorded i64][patients u16 ([len u16][utf8])*][content]`,
    /// little-endian. `check` is FNV-1a over the segment's number and the body: a frame torn by
    /// a crash, or left from the file's use under an earlier number, fails it.
    static func frame(_ r: AuditRecord, segment: Int, into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: 12))  // length and check, filled in below
        withUnsafeBytes(of: r.recorded.littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt16(r.patients.count).littleEndian) { out += $0 }
        for p in r.patients {
            withUnsafeBytes(of: UInt16(p.utf8.count).littleEndian) { out += $0 }
            out += p.utf8
        }
        out += r.content
        let length = UInt32(out.count - start - 12)
        let check = checksum(segment: segment, out[(start + 12)...])
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: length.littleEndian, toByteOffset: start, as: UInt32.self)
            b.storeBytes(of: check.littleEndian, toByteOffset: start + 4, as: UInt64.self)
        }
    }

    static func checksum(segment: Int, _ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        withUnsafeBytes(of: UInt64(segment).littleEndian) { for b in $0 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    /// The frames of a segment, up to the first that is absent (zero length: the file's unused
    /// tail) or torn (its append never returned, so no response relied on it).
    static func readFrames(_ path: String, segment: Int) throws -> [AuditRecord] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var records: [AuditRecord] = []
        var i = 0
        func integer<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: data[at..<at + MemoryLayout<T>.size]) }
            return T(littleEndian: v)
        }
        while i + 12 <= data.count {
            let length = Int(integer(UInt32.self, i))
            let end = i + 12 + length
            guard length >= 10, end <= data.count, checksum(segment: segment, data[(i + 12)..<end]) == integer(UInt64.self, i + 4) else { break }
            var j = i + 12
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
private final class Segment: @unchecked Sendable {
    private(set) var number: Int
    private let fd: Int32
    private let base: UnsafeMutableRawPointer
    let capacity: Int
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

    /// The frames appended so far, in the mapping.
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: used) }

    /// Takes the file up again under a new number, writing from its start.
    func reuse(from old: String, as path: String, number: Int) throws {
        guard rename(old, path) == 0 else { throw StoreError.storage("Cannot rename the audit spool \(old): errno \(errno)") }
        self.number = number
        used = 0
    }

    /// Copies `frames` (whole frames) in.
    func append(_ frames: [UInt8], sync: Bool) throws {
        precondition(open && fits(frames.count))
        let start = used
        frames.withUnsafeBytes { src in
            var i = 0
            while i < src.count {
                let length = src.loadUnaligned(fromByteOffset: i, as: UInt32.self)
                let frame = 12 + Int(UInt32(littleEndian: length))
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

/// Events moved from the spool, as the writer reads them: the frames of the covered segments,
/// in their mappings (valid until the move puts the segments back, after its commit).
final class SpooledEvents: @unchecked Sendable {
    let regions: [UnsafeRawBufferPointer]

    init(_ regions: [UnsafeRawBufferPointer]) {
        self.regions = regions
    }

    /// One event in place: when it was recorded, its stored bytes, and its patients' references.
    struct Event {
        let recorded: Int64
        let content: UnsafeRawBufferPointer
        let patients: UnsafeRawBufferPointer
        let patientCount: Int

        func forEachPatient(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
            var j = 0
            for _ in 0..<patientCount {
                let n = Int(UInt16(littleEndian: patients.loadUnaligned(fromByteOffset: j, as: UInt16.self)))
                try body(UnsafeRawBufferPointer(rebasing: patients[(j + 2)..<(j + 2 + n)]))
                j += 2 + n
            }
        }
    }

    /// The events in spool order. The frames were written whole by this process (under the
    /// spool's lock), so they are not checked again.
    func forEach(_ body: (Event) throws -> Void) rethrows {
        for region in regions {
            var i = 0
            while i + 12 <= region.count {
                let length = Int(UInt32(littleEndian: region.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
                let end = i + 12 + length
                var j = i + 12
                let recorded = Int64(littleEndian: region.loadUnaligned(fromByteOffset: j, as: Int64.self))
                let patientCount = Int(UInt16(littleEndian: region.loadUnaligned(fromByteOffset: j + 8, as: UInt16.self)))
                j += 10
                let patientsStart = j
                for _ in 0..<patientCount {
                    j += 2 + Int(UInt16(littleEndian: region.loadUnaligned(fromByteOffset: j, as: UInt16.self)))
                }
                try body(Event(recorded: recorded, content: UnsafeRawBufferPointer(rebasing: region[j..<end]),
                               patients: UnsafeRawBufferPointer(rebasing: region[patientsStart..<j]), patientCount: patientCount))
                i = end
            }
        }
    }
}
