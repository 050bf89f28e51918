#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import Synchronization

/// Audit events of reads, durable before the response and cheap: an audit-only unit is appended
/// to a spool file (one `write`, as durable as a `synchronous=NORMAL` commit: it survives the
/// process being killed; with `--durability full` it is fsynced too) and moved into the hash
/// chain a few milliseconds later, hundreds per transaction. On open, events a crash left in the
/// spool are moved first; the last segment moved is saved in the same transaction as its events,
/// so none is moved twice.
final class AuditSpool: Sendable {
    private struct State {
        var fd: Int32
        var segment: Int
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
    /// How long an append waits for others to join its move.
    static let gather: Duration = .milliseconds(10)

    /// Opens the spool in `folder`, first moving whatever a previous process left there.
    static func open(folder: String, fsync: Bool, writer: SQLiteWriter, movedSegment: Int, logger: Logger) async throws -> AuditSpool {
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
        let fd = try Self.openSegment(Self.path(folder, next))
        return AuditSpool(folder: folder, fsync: fsync, writer: writer, fd: fd, segment: next, logger: logger)
    }

    private init(folder: String, fsync: Bool, writer: SQLiteWriter, fd: Int32, segment: Int, logger: Logger) {
        self.folder = folder
        self.fsyncEach = fsync
        self.writer = writer
        self.logger = logger
        self.state = Mutex(State(fd: fd, segment: segment))
    }

    /// Makes `records` durable in the spool; they reach the chain at the next move.
    func append(_ records: [AuditRecord]) throws {
        var frames: [UInt8] = []
        for r in records { Self.frame(r, into: &frames) }
        let schedule = try state.withLock { s throws -> Bool in
            guard !s.closed else { throw StoreError.storage("The store is closed") }
            try Self.writeAll(s.fd, frames)
            if fsyncEach, fsync(s.fd) != 0 { throw StoreError.storage("fsync of the audit spool failed: errno \(errno)") }
            s.pending += records
            defer { s.moveScheduled = true }
            return !s.moveScheduled
        }
        if schedule {
            Task {
                try? await Task.sleep(for: Self.gather)
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
            // Start a new segment; the old one goes once its events are committed.
            let (records, segment) = try state.withLock { s throws -> ([AuditRecord], Int) in
                s.moveScheduled = false
                guard !s.pending.isEmpty else { return ([], 0) }
                let old = s.segment
                let fd = try Self.openSegment(Self.path(folder, old + 1))
                closeDescriptor(s.fd)
                s.fd = fd
                s.segment = old + 1
                defer { s.pending = [] }
                return (s.pending, old)
            }
            guard !records.isEmpty else { return }
            var unit = WriteUnit(writes: [])
            unit.audit = records
            unit.records = [RecordWrite(PlatformRecord(kind: Self.marker.kind, id: Self.marker.id, content: String(segment)))]
            do {
                _ = try await writer.submit(unit)
            } catch {
                // Back in line: the next move commits them with its own (its marker covers this segment).
                state.withLock { s in s.pending = records + s.pending }
                throw error
            }
            unlink(Self.path(folder, segment))
        }
    }

    func close() async throws {
        try await flush()
        state.withLock { s in
            s.closed = true
            closeDescriptor(s.fd)
        }
        unlink(Self.path(folder, state.withLock { $0.segment }))
    }

    // MARK: files

    static func path(_ folder: String, _ segment: Int) -> String { "\(folder)/\(segment).spool" }

    static func segments(in folder: String) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: folder)
            .compactMap { $0.hasSuffix(".spool") ? Int($0.dropLast(6)) : nil }.sorted()
    }

    static func openSegment(_ path: String) throws -> Int32 {
        let fd = openDescriptor(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.storage("Cannot open the audit spool \(path): errno \(errno)") }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { writeDescriptor(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.storage("Writing the audit spool failed: errno \(errno)")
            }
            offset += n
        }
    }

    /// `[length u32][recorded i64][patients u16 ([len u16][utf8])*][content]`, little-endian.
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
        out += body
    }

    /// The frames of a segment; a torn last frame (power loss mid-write) is dropped: its append
    /// never returned, so no response relied on it.
    static func readFrames(_ path: String) throws -> [AuditRecord] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var records: [AuditRecord] = []
        var i = 0
        func integer<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: data[at..<at + MemoryLayout<T>.size]) }
            return T(littleEndian: v)
        }
        while i + 4 <= data.count {
            let length = Int(integer(UInt32.self, i))
            let end = i + 4 + length
            guard end <= data.count, length >= 10 else { break }
            var j = i + 4
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

// The C calls by other names: inside the class, `close` and `open` are its own methods.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
private func openDescriptor(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func writeDescriptor(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }

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
