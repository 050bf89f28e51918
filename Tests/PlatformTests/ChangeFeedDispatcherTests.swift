import Access
import FHIRModel
import Foundation
import Logging
import Platform
import Store
import StoreTestSupport
import Synchronization
import XCTest

/// The change-feed dispatcher (ADR 020): a registered consumer receives every committed change in
/// commit order, woken by commits, and two nodes never serve one consumer name at once.
final class ChangeFeedDispatcherTests: XCTestCase {
    final class Received: Sendable {
        private let state = Mutex<(changes: [ResourceChange], active: Int, maxActive: Int)>(([], 0, 0))
        var changes: [ResourceChange] { state.withLock { $0.changes } }
        var maxActive: Int { state.withLock { $0.maxActive } }
        func handle(_ batch: [ResourceChange]) async {
            state.withLock { $0.active += 1; $0.maxActive = max($0.maxActive, $0.active) }
            try? await Task.sleep(for: .milliseconds(2))   // long enough for another node to try meanwhile
            state.withLock { $0.changes += batch; $0.active -= 1 }
        }
    }

    static func patient(_ i: Int) -> JSON {
        try! JSONParser.parse(Array(#"{"resourceType":"Patient","id":"p\#(i)","name":[{"family":"test\#(i)"}],"gender":"male"}"#.utf8))
    }

    /// Waits (a liveness bound, not a timing assertion) until `done` holds.
    static func eventually(_ done: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !done() {
            guard ContinuousClock.now < deadline else { return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func test_aConsumer_receivesEveryCommittedChangeInCommitOrder() async throws {
        try await withEachBackend { test in
            let service = FHIRService(store: test.store, matching: nil, principal: .platform)
            let received = Received()
            let dispatcher = ChangeFeedDispatcher(store: test.store, consumers: [ChangeConsumer(name: "orders", batch: 16) { await received.handle($0) }],
                                                  poll: .seconds(30), logger: Logger(label: "test"))
            let running = Task { await dispatcher.run() }
            defer { running.cancel() }
            var committed: [String] = []
            for i in 0..<60 {
                _ = try await service.update("Patient", "p\(i)", body: Self.patient(i))
                committed.append("Patient/p\(i)/1")
            }
            for i in 0..<10 {
                _ = try await service.update("Patient", "p\(i)", body: Self.patient(i))
                committed.append("Patient/p\(i)/2")
            }
            // The poll is 30 s: only the commits' signal can have woken the consumer this soon.
            try await Self.eventually { received.changes.count >= committed.count }
            XCTAssertEqual(received.changes.map { "\($0.key)/\($0.version)" }, committed, "every change once, in commit order")
            running.cancel()
            await running.value
        }
    }

    func test_twoNodes_neverServeOneConsumerAtOnce() async throws {
        try await withEachBackend { test in
            // A second node: on PostgreSQL another store on the same database; the embedded store
            // belongs to one process, whose two dispatchers share it.
            let other = test.backend == .postgres ? try await test.reopen() : test.store
            let received = Received()
            let consumer = ChangeConsumer(name: "shared", batch: 8) { await received.handle($0) }
            let a = Task { await ChangeFeedDispatcher(store: test.store, consumers: [consumer], poll: .milliseconds(50), logger: Logger(label: "a")).run() }
            let b = Task { await ChangeFeedDispatcher(store: other, consumers: [consumer], poll: .milliseconds(50), logger: Logger(label: "b")).run() }
            let writerA = FHIRService(store: test.store, matching: nil, principal: .platform)
            let writerB = FHIRService(store: other, matching: nil, principal: .platform)
            for i in 0..<80 {
                _ = try await (i % 2 == 0 ? writerA : writerB).update("Patient", "p\(i)", body: Self.patient(i))
            }
            try await Self.eventually { received.changes.count >= 80 }
            a.cancel(); b.cancel()
            await a.value; await b.value
            if test.backend == .postgres { try await other.close() }
            XCTAssertEqual(received.maxActive, 1, "one node at a time serves a consumer")
            XCTAssertEqual(Set(received.changes.map(\.key.id)).count, 80, "every change")
            XCTAssertEqual(received.changes.count, 80, "none twice")
        }
    }

    /// `serve --export-changes`: every committed change, as a line a downstream system reads
    /// (references, no content), in commit order, written before the position moves.
    func test_fileExport_writesEveryChangeAsALine_withoutContent() async throws {
        try await withEachBackend { test in
            let folder = NSTemporaryDirectory() + "export-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let export = try ChangeFileExport(folder: folder)
            let dispatcher = ChangeFeedDispatcher(store: test.store, consumers: [export.consumer], poll: .seconds(30), logger: Logger(label: "test"))
            let running = Task { await dispatcher.run() }
            let service = FHIRService(store: test.store, matching: nil, principal: .platform)
            for i in 0..<5 { _ = try await service.update("Patient", "p\(i)", body: Self.patient(i)) }
            _ = try await service.update("Patient", "p0", body: Self.patient(0))
            _ = try await service.delete("Patient", "p1")
            func lines() -> [JSON] {
                let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
                return files.flatMap { name -> [JSON] in
                    let text = (try? String(contentsOfFile: folder + "/" + name, encoding: .utf8)) ?? ""
                    return text.split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8)) }
                }
            }
            try await Self.eventually { lines().count >= 7 }
            running.cancel()
            await running.value
            let got = lines()
            XCTAssertEqual(got.map { "\($0["id"]?.stringValue ?? "")/\($0["versionId"]?.stringValue ?? "")" },
                           ["p0/1", "p1/1", "p2/1", "p3/1", "p4/1", "p0/2", "p1/2"])
            XCTAssertEqual(got.map { $0["deleted"]?.boolValue }, [false, false, false, false, false, false, true])
            for line in got {
                XCTAssertEqual(line.objectValue?.keys.sorted(), ["deleted", "id", "lastUpdated", "resourceType", "versionId"], "references only")
            }
            let left = try await test.store.consumeChanges(consumer: ChangeFileExport.consumerName, limit: 10) { _ in }
            XCTAssertEqual(left, 0, "the position moved past every exported change")
        }
    }
}
