import Foundation
@_spi(WritePipeline) @testable import Store
import XCTest

/// The embedded store's audit spool (ADR 010): reads' events are durable in a mapped file before
/// the response, and whatever a crash leaves there reaches the chain when the store opens again.
final class AuditSpoolTests: XCTestCase {
    func record(_ n: Int, bytes: Int = 0) -> AuditRecord {
        var content = Array(#"{"n":\#(n),"pad":""#.utf8)
        content += [UInt8](repeating: UInt8(ascii: "x"), count: bytes)
        content += Array(#""}"#.utf8)
        return AuditRecord(recorded: Int64(n), content: content, patients: ["Patient/\(n)", "Patient/欧阳"])
    }

    func test_readFrames_keepsWholeFrames_andStopsAtATornOrAbsentOne() throws {
        var bytes: [UInt8] = []
        for n in 1...3 { AuditSpool.frame(record(n), segment: 9, into: &bytes) }
        var torn: [UInt8] = []
        AuditSpool.frame(record(4), segment: 9, into: &torn)
        let path = NSTemporaryDirectory() + "spool-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }

        // Whole frames, then the zeros of the file's unused tail.
        try Data(bytes + [UInt8](repeating: 0, count: 4096)).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try AuditSpool.readFrames(path, segment: 9), (1...3).map { record($0) })
        // A frame cut short (its length says more than is there).
        try Data(bytes + torn.dropLast(5)).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try AuditSpool.readFrames(path, segment: 9).count, 3)
        // A frame whose body does not match its checksum (pages persisted out of order), and all after it.
        var changed = bytes + torn + bytes
        changed[bytes.count + 20] ^= 0x01
        try Data(changed).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try AuditSpool.readFrames(path, segment: 9), (1...3).map { record($0) })
        // Whole frames written under another segment number: the file's earlier life.
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try AuditSpool.readFrames(path, segment: 10), [])
    }

    /// A new store folder, and the name of the copy a test takes of it as a crash would leave it.
    static func folders(_ prefix: String) throws -> (folder: String, copy: String) {
        let folder = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return (folder, folder + "-crashed")
    }

    func test_eventsInTheSpoolAtACrash_reachTheChainOnOpen_acrossSegments() async throws {
        let (folder, copy) = try Self.folders("spool-store")
        defer {
            try? FileManager.default.removeItem(atPath: folder)
            try? FileManager.default.removeItem(atPath: copy)
        }
        // Segments of a page, and no move before the snapshot below.
        let tuning = AuditSpool.Tuning(gather: .seconds(3600), segmentBytes: 4096)
        let store = try await SQLiteStore.open(path: folder + "/db.sqlite", spool: tuning)
        // Events of 1.5 KB: a segment holds two; the fifth is bigger than a segment.
        let sizes = [1500, 1500, 1500, 1500, 6000, 10]
        for (n, size) in zip(1..., sizes) {
            var unit = WriteUnit(writes: [])
            unit.audit = [record(n, bytes: size)]
            _ = try await store.commit(unit)
        }
        // The files as a `kill -9` now would leave them: the events are in the spool only.
        let spooled = try FileManager.default.contentsOfDirectory(atPath: folder + "/db.sqlite-audit-spool")
        XCTAssertEqual(spooled.count, 4, "\(spooled)")
        try FileManager.default.copyItem(atPath: folder, toPath: copy)
        try await store.close()

        let reopened = try await SQLiteStore.open(path: copy + "/db.sqlite")
        let report = try await reopened.verifyAuditChain(progress: { _ in })
        XCTAssertNil(report.broken)
        XCTAssertEqual(report.checked, 6)
        let events = try await reopened.auditEvents(after: 0, limit: 10)
        XCTAssertEqual(events.map(\.content), zip(1..., sizes).map { record($0, bytes: $1).content })
        let aboutThree = try await reopened.auditEvents(patients: ["Patient/3"], before: nil, limit: 10)
        XCTAssertEqual(aboutThree.map(\.seq), [3])
        try await reopened.close()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: copy + "/db.sqlite-audit-spool"), [],
                       "moved segments are removed")
        // The store that kept running moves its own spool on close; the copy's events are not moved twice.
        let original = try await SQLiteStore.open(path: folder + "/db.sqlite")
        let again = try await original.verifyAuditChain(progress: { _ in })
        XCTAssertEqual(again.checked, 6)
        try await original.close()
    }

    func test_segmentsAreReused_andAReusedSegmentsOldFramesAreNotMovedAgain() async throws {
        let (folder, copy) = try Self.folders("spool-reuse")
        defer {
            try? FileManager.default.removeItem(atPath: folder)
            try? FileManager.default.removeItem(atPath: copy)
        }
        let store = try await SQLiteStore.open(path: folder + "/db.sqlite", spool: AuditSpool.Tuning(gather: .seconds(3600), segmentBytes: 4096))
        func spool(_ numbers: ClosedRange<Int>) async throws {
            for n in numbers {
                var unit = WriteUnit(writes: [])
                unit.audit = [record(n, bytes: 100)]
                _ = try await store.commit(unit)
            }
        }
        // Reading the trail moves the spool into the chain first.
        try await spool(1...3)
        _ = try await store.auditEvents(after: 0, limit: 1)
        try await spool(4...5)
        _ = try await store.auditEvents(after: 0, limit: 1)
        for round in 0..<5 {
            try await spool((10 + round * 10)...(12 + round * 10))
            _ = try await store.auditEvents(after: 0, limit: 1)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder + "/db.sqlite-audit-spool")
        XCTAssertLessThanOrEqual(files.count, 3, "moved segments are reused, not multiplied: \(files)")
        // Moved events keep their time and patients (a resident's "who viewed my record").
        var spooledSoFar: [Int64] = [1, 2, 3, 4, 5]
        for round in 0..<5 { spooledSoFar += ((10 + round * 10)...(12 + round * 10)).map { Int64($0) } }
        let moved = try await store.auditEvents(after: 0, limit: 100)
        XCTAssertEqual(moved.map(\.recorded), spooledSoFar)
        let aboutOuyang = try await store.auditEvents(patients: ["Patient/欧阳"], before: nil, limit: 100)
        XCTAssertEqual(aboutOuyang.count, 20)
        let about21 = try await store.auditEvents(patients: ["Patient/21"], before: nil, limit: 100)
        XCTAssertEqual(about21.map(\.content), [record(21, bytes: 100).content])
        // The current segment held events 40-42 before; event 60 has the same size, so the old
        // frames of 41 and 42 follow it, aligned, and must not come back as events after a crash.
        try await spool(60...60)
        try FileManager.default.copyItem(atPath: folder, toPath: copy)
        try await store.close()
        let reopened = try await SQLiteStore.open(path: copy + "/db.sqlite")
        let events = try await reopened.auditEvents(after: 0, limit: 100)
        var numbers = [1, 2, 3, 4, 5]
        for round in 0..<5 { numbers += Array((10 + round * 10)...(12 + round * 10)) }
        numbers.append(60)
        XCTAssertEqual(events.map(\.content), numbers.map { record($0, bytes: 100).content })
        let report = try await reopened.verifyAuditChain(progress: { _ in })
        XCTAssertNil(report.broken)
        try await reopened.close()
    }
}
