import Foundation
import NIOCore
@testable import Store
import StoreTestSupport
import XCTest

/// The stores' document streams (ADR 029): bytes appended in pieces of any size are read back
/// by any range, after a restart too; a stream's size is known only once it is whole; a
/// discarded stream is gone.
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
}

extension TestStore {
    /// The SQLite store closed and opened again (the files outlive the process); PostgreSQL as it is.
    func reopenedIfSQLite() async throws -> any ResourceStore {
        guard backend == .sqlite else { return store }
        try await store.close()
        return try await reopen()
    }
}
