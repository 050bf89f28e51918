import FHIRModel
import Foundation
import NIOCore
import Platform
@_spi(WritePipeline) @testable import Store
import StoreTestSupport
import XCTest

/// The stores' document streams (ADR 029): bytes appended in pieces of any size are read back
/// by any range, after a restart too; a stream's size is known only once it is whole; a
/// discarded stream is gone; a stream is pending until the commit of a version naming it, only
/// an idle pending one is removed by `discardIdle`, after which its writer cannot finish it and
/// no version naming it commits.
final class DocumentStreamsTests: XCTestCase {
    func test_streamsAppendedInPieces_readBackByAnyRange_onEachBackend() async throws {
        try await withEachBackend { test in
            let streams = test.store.documentStreams
            let bytes = (0..<(2 * 1_048_576 + 12_345)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
            let writer = try await streams.create()
            XCTAssertTrue(FileDocumentStreams.isStreamID(writer.id))
            var offset = 0
            for piece in [1, 65_552, 700_000, 1_048_576, 5] + Array(repeating: 100_000, count: 40) where offset < bytes.count {
                let end = min(bytes.count, offset + piece)
                try await writer.append(ByteBuffer(bytes: bytes[offset..<end]))
                offset = end
            }
            XCTAssertEqual(offset, bytes.count)
            if test.backend == .postgres { let size = try await streams.size(writer.id); XCTAssertNil(size, "not whole before finish") }
            let size = try await writer.finish()
            XCTAssertEqual(size, bytes.count)

            let store = try await test.reopenedIfSQLite()
            let reopened = store.documentStreams
            let stored = try await reopened.size(writer.id)
            XCTAssertEqual(stored, bytes.count)
            for (from, count) in [(0, 10), (1_048_570, 20), (1_048_576, 1_048_576), (bytes.count - 7, 100), (0, bytes.count), (bytes.count, 5)] {
                let read = try await reopened.read(writer.id, offset: from, count: count)
                XCTAssertEqual(Array(read.readableBytesView), Array(bytes[min(from, bytes.count)..<min(bytes.count, from + count)]), "\(from)+\(count)")
            }
            await reopened.discard(writer.id)
            let gone = try await reopened.size(writer.id)
            XCTAssertNil(gone)
            let unknown = try await reopened.size("0123456789abcdef0123456789abcdef")
            XCTAssertNil(unknown)
            if test.backend == .sqlite { try await store.close() }
        }
    }

    func binary(_ id: String, naming stream: String?) throws -> PreparedWrite {
        var write = try IngestPipeline().prepare(try JSONParser.parse(#"{"resourceType":"Binary","contentType":"application/pdf"}"#),
                                                 type: "Binary", id: id, method: "PUT")
        write.namesStream = stream
        return write
    }

    func test_pendingStreams_settledByTheirCommit_idleOnesRemovable_andThenNeverNamed_onEachBackend() async throws {
        try await withEachBackend { test in
            let store = test.store, streams = test.store.documentStreams
            func written(_ count: Int) async throws -> String {
                let writer = try await streams.create()
                try await writer.append(ByteBuffer(repeating: 7, count: count))
                _ = try await writer.finish()
                return writer.id
            }
            let named = try await written(100), abandoned = try await written(200), late = try await written(300)
            let cut = try await streams.create()
            try await cut.append(ByteBuffer(repeating: 1, count: 300))

            // Just written: pending, none idle for an hour.
            let fresh = try await streams.pending(idleFor: 0)
            XCTAssertEqual(Set(fresh.map(\.id)), [named, abandoned, late, cut.id])
            let idleNow = try await streams.pending(idleFor: 3600)
            XCTAssertEqual(idleNow, [])
            let busy = try await streams.discardIdle(abandoned, idleFor: 3600)
            XCTAssertFalse(busy, "written a moment ago")

            // The commit of the version naming a stream settles it.
            _ = try await store.commit(WriteUnit(writes: [try binary("b1", naming: named)]))
            try await test.backdateStreams([named, abandoned, late, cut.id], seconds: 7200)
            let now = Int(Date().timeIntervalSince1970)
            let idle = try await streams.pending(idleFor: 3600)
            XCTAssertEqual(Set(idle.map(\.id)), [abandoned, late, cut.id], "a settled stream is not pending")
            XCTAssertTrue(idle.allSatisfy { (7190...7260).contains(now - $0.lastWrite) }, "\(idle)")
            let settledRemoved = try await streams.discardIdle(named, idleFor: 3600)
            XCTAssertFalse(settledRemoved, "a named stream is never removed")

            // An upload that resumes is no longer idle.
            try await cut.append(ByteBuffer(repeating: 2, count: 2_000_000))
            let resumed = try await streams.discardIdle(cut.id, idleFor: 3600)
            XCTAssertFalse(resumed)
            let removed = try await streams.discardIdle(abandoned, idleFor: 3600)
            XCTAssertTrue(removed)
            let gone = try await streams.size(abandoned)
            XCTAssertNil(gone)
            let kept = try await streams.size(named)
            XCTAssertEqual(kept, 100)

            // A unit naming a stream that fails otherwise (If-Match on a Binary that does not exist)
            // leaves it pending.
            var conflicting = try binary("b3", naming: late)
            conflicting = PreparedWrite(key: conflicting.key, action: .update, method: "PUT", template: conflicting.template,
                                        index: conflicting.index, ifMatch: 7, resource: conflicting.resource)
            conflicting.namesStream = late
            do {
                _ = try await store.commit(WriteUnit(writes: [conflicting]))
                XCTFail("If-Match on nothing committed")
            } catch is StoreError {}
            let stillPending = try await streams.pending(idleFor: 3600)
            XCTAssertTrue(stillPending.contains { $0.id == late }, "a refused unit leaves its stream pending")

            // A version naming a removed stream does not commit (its write came after the sweep),
            // while a unit committed beside it (in the same batch, when the store groups them) does.
            let lateRemoved = try await streams.discardIdle(late, idleFor: 3600)
            XCTAssertTrue(lateRemoved)
            let (refusedUnit, besideUnit) = (WriteUnit(writes: [try binary("b2", naming: late)]), WriteUnit(writes: [try binary("b4", naming: nil)]))
            async let refused = store.commit(refusedUnit)
            async let beside = store.commit(besideUnit)
            do {
                _ = try await refused
                XCTFail("a version naming a removed stream committed")
            } catch let error as StoreError {
                XCTAssertEqual(error, .streamRemoved(late))
            }
            let besideOutcome = try await beside
            XCTAssertEqual(besideOutcome.first?.version, 1)
            let b2 = try await store.read(ResourceKey("Binary", "b2"))
            XCTAssertNil(b2, "nothing of the refused unit is stored")

            // Removed while idle, an upload cannot be finished.
            try await test.backdateStreams([cut.id], seconds: 7200)
            let cutRemoved = try await streams.discardIdle(cut.id, idleFor: 3600)
            XCTAssertTrue(cutRemoved)
            do {
                try await cut.append(ByteBuffer(repeating: 3, count: 10))
                _ = try await cut.finish()
                XCTFail("a removed stream was finished")
            } catch let error as StoreError {
                XCTAssertEqual(error, .streamRemoved(cut.id))
            }
            let cutSize = try await streams.size(cut.id)
            XCTAssertNil(cutSize)
            // The same when all its bytes were written before (on PostgreSQL: only its size row is left to write).
            let whole = try await streams.create()
            try await whole.append(ByteBuffer(repeating: 4, count: 1 << 20))
            try await test.backdateStreams([whole.id], seconds: 7200)
            let wholeRemoved = try await streams.discardIdle(whole.id, idleFor: 3600)
            XCTAssertTrue(wholeRemoved)
            do {
                _ = try await whole.finish()
                XCTFail("a removed stream was finished")
            } catch let error as StoreError {
                XCTAssertEqual(error, .streamRemoved(whole.id))
            }
            let left = try await streams.pending(idleFor: 0)
            XCTAssertEqual(left, [])
        }
    }
}

final class DocumentDiskReserveTests: XCTestCase {
    /// The embedded store's streams never take its disk below the reserve: a document that does
    /// not fit is refused before it is begun, and a stream that reaches the reserve as it grows is
    /// refused at that write. (PostgreSQL's disk is the database server's: nothing is checked.)
    func test_streamsRefusedAtTheReserve_sqlite() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("huitong-reserve-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let free = try XCTUnwrap(FileDocumentStreams.available(path: folder))
        guard free > 1 << 30 else { throw XCTSkip("less than 1 GiB free on the test disk") }
        let store = try await SQLiteStore.open(path: folder + "/db.sqlite", documentDiskReserve: free - 32 * 1_048_576)
        let streams = store.documentStreams
        try await streams.ensureRoom(for: 1_048_576)
        do {
            try await streams.ensureRoom(for: 256 * 1_048_576)
            XCTFail("a document larger than the room left was begun")
        } catch StoreError.insufficientStorage {}
        let writer = try await streams.create()
        do {
            for _ in 0..<256 { try await writer.append(ByteBuffer(repeating: 5, count: 1_048_576)) }
            XCTFail("a stream grew into the reserve")
        } catch StoreError.insufficientStorage {}
        await streams.discard(writer.id)
        let size = try await streams.size(writer.id)
        XCTAssertNil(size)
        let pending = try await streams.pending(idleFor: 0)
        XCTAssertEqual(pending, [])
        try await store.close()
    }
}

extension TestStore {
    /// The SQLite store closed and opened again (the files outlive the process); PostgreSQL as it is.
    func reopenedIfSQLite() async throws -> any ResourceStore {
        guard backend == .sqlite else { return store }
        try await store.close()
        return try await reopen()
    }
}
