import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) import Store
import StoreTestSupport
import Synchronization
import XCTest

/// The change feed: every committed change reaches each consumer once, in commit order, and a
/// restarted consumer resumes where it stopped. Runs on every available backend.
final class ChangeFeedTests: XCTestCase {
    static func write(_ store: any ResourceStore, _ id: String) async throws {
        let w = try IngestPipeline().prepare(try JSONParser.parse(#"{"resourceType":"Patient","gender":"male"}"#),
                                             type: "Patient", id: id, method: "PUT")
        _ = try await store.commit(WriteUnit(writes: [w]))
    }

    /// Changes handed to a consumer, from any task.
    final class Seen: Sendable {
        private let changes = Mutex<[ResourceChange]>([])
        func withLock<T>(_ f: (inout [ResourceChange]) -> T) -> T { changes.withLock { f(&$0) } }
    }

    /// Drains the feed for `consumer` into `seen`.
    static func drain(_ store: any ResourceStore, _ consumer: String, into seen: Seen, limit: Int = 7) async throws {
        while try await store.consumeChanges(consumer: consumer, limit: limit, { changes in
            seen.withLock { $0.append(contentsOf: changes) }
        }) > 0 {}
    }

    func test_feed_deliversEveryChangeOnceInOrder_andResumesAfterRestart() async throws {
        try await withEachBackend { test in
            let store = test.store
            for i in 0..<20 { try await Self.write(store, "p\(i)") }
            try await Self.write(store, "p3")   // version 2
            _ = try await store.commit(WriteUnit(writes: [IngestPipeline().prepareDelete(ResourceKey("Patient", "p4"))]))
            let seen = Seen()
            try await Self.drain(store, "surveillance", into: seen)
            var changes = seen.withLock { $0 }
            XCTAssertEqual(changes.count, 22)
            XCTAssertEqual(changes.prefix(20).map(\.key.id), (0..<20).map { "p\($0)" })
            XCTAssertEqual(changes[20].key.id, "p3"); XCTAssertEqual(changes[20].version, 2)
            XCTAssertEqual(changes[21].key.id, "p4"); XCTAssertTrue(changes[21].deleted)
            // Another consumer has its own position.
            let other = Seen()
            try await Self.drain(store, "notifications", into: other)
            XCTAssertEqual(other.withLock { $0.count }, 22)
            // A handler that fails does not move the position: the same changes come again.
            try await Self.write(store, "q0")
            struct Boom: Error {}
            do {
                _ = try await store.consumeChanges(consumer: "surveillance", limit: 10) { _ in throw Boom() }
                XCTFail("the handler's error must reach the caller")
            } catch is Boom {}
            // After a restart the consumer continues after what it handled.
            try await store.close()
            let reopened = try await test.reopen()
            try await Self.write(reopened, "q1")
            seen.withLock { $0.removeAll() }
            try await Self.drain(reopened, "surveillance", into: seen)
            changes = seen.withLock { $0 }
            XCTAssertEqual(changes.map(\.key.id), ["q0", "q1"])
            try await reopened.close()
        }
    }

    func test_feed_concurrentCallersOfOneConsumer_eachChangeHandledOnce() async throws {
        try await withEachBackend { test in
            let store = test.store
            let seen = Seen()
            // Writers and four competing callers of the same consumer run at once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for i in 0..<200 { try await Self.write(store, "w\(i)") }
                }
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<60 {
                            try await Self.drain(store, "one", into: seen, limit: 5)
                            try await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await Self.drain(store, "one", into: seen)
            let ids = seen.withLock { $0.map(\.key.id) }
            XCTAssertEqual(ids.count, 200, "every change exactly once")
            XCTAssertEqual(Set(ids).count, 200)
            XCTAssertEqual(ids, (0..<200).map { "w\($0)" }, "in commit order")
        }
    }
}
