import Access
import FHIRModel
import NIOCore
@testable import Platform
import Store
import StoreTestSupport
import XCTest

/// The sweep of abandoned document streams (ADR 029), through the route's own calls: a stream
/// whose upload finished but whose Binary never committed (the server killed in between) is
/// removed once idle; one a committed Binary names is kept and reads back; a fresh one is not
/// looked at; a Binary written after its stream was swept is refused, not acknowledged.
final class DocumentStreamSweepTests: XCTestCase {
    struct Chunks: AsyncIteratorProtocol {
        var rest: [ByteBuffer]
        mutating func next() async -> ByteBuffer? { rest.isEmpty ? nil : rest.removeFirst() }
    }

    static let binary = try! JSONParser.parse(Array(#"{"resourceType":"Binary","contentType":"application/pdf"}"#.utf8))

    func test_abandonedStreamsRemoved_namedOnesKept_lateWritesRefused_onEachBackend() async throws {
        try await withEachBackend { test in
            let protection = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1"))
            let service = FHIRService(store: test.store, pipeline: IngestPipeline(protection: protection), matching: nil).acting(as: .platform)
            func received(_ count: Int) async throws -> StreamedDocument.Pending {
                var rest = Chunks(rest: [ByteBuffer(repeating: 0x25, count: count / 2), ByteBuffer(repeating: 0x50, count: count - count / 2)])
                return try await service.receiveDocument(prefix: ByteBuffer(), rest: &rest, limit: 1 << 30)
            }
            let streams = test.store.documentStreams

            // Written through the route's path: named, and settled by its commit.
            let named = try await received(300_000)
            let written = try await service.writeStreamed(named) { try await service.create("Binary", body: Self.binary) }
            // Whole, but its Binary never committed (the server killed before the commit).
            let abandoned = try await received(100_000)
            // Whole, and its Binary's write comes only after the sweep.
            let late = try await received(200_000)
            let pendingNow = try await streams.pending(idleFor: 0)
            XCTAssertEqual(Set(pendingNow.map(\.id)), [abandoned.reference.id, late.reference.id])

            let sweep = DocumentStreamSweep(store: test.store, idleFor: 3600)
            let early = try await sweep.sweep()
            XCTAssertEqual(early.removed, 0, "nothing idle for an hour yet")

            try await test.backdateStreams([named.reference.id, abandoned.reference.id, late.reference.id], seconds: 7200)
            let swept = try await sweep.sweep()
            XCTAssertEqual(swept.removed, 2)
            XCTAssertEqual(swept.failures, [])
            for gone in [abandoned, late] {
                let size = try await streams.size(gone.reference.id)
                XCTAssertNil(size)
            }
            let record = try await test.store.read(XCTUnwrap(written.key))
            let read = try await service.documentStream(XCTUnwrap(record))
            XCTAssertEqual(read?.reference.size, 300_000, "the named document stays")

            do {
                _ = try await service.writeStreamed(late) { try await service.create("Binary", body: Self.binary) }
                XCTFail("a Binary naming a swept stream was acknowledged")
            } catch let error as FHIRError {
                XCTAssertEqual(error.category, .conflict)
            }
            let binaries = try await test.store.resourceCounts()["Binary"]
            XCTAssertEqual(binaries, 1, "nothing of the refused write is stored")
            let left = try await streams.pending(idleFor: 0)
            XCTAssertEqual(left, [])
            let again = try await sweep.sweep()
            XCTAssertEqual(again.removed, 0)
        }
    }
}
