@testable import Platform
import Synchronization
import XCTest

final class NamedLocksTests: XCTestCase {
    final class Log: Sendable {
        let entries = Mutex<[String]>([])
        func add(_ s: String) { entries.withLock { $0.append(s) } }
        var all: [String] { entries.withLock { $0 } }
    }

    func test_holdersOfDisjointNames_runTogether_overlappingNamesWaitInArrivalOrder() async throws {
        let locks = NamedLocks()
        await locks.acquire(["a", "b"])
        await locks.acquire(["c"])  // shares nothing with the first holder: granted at once
        XCTAssertEqual(locks.held, ["a", "b", "c"])

        let log = Log()
        let second = Task { await locks.acquire(["b", "d"]); log.add("b,d") }
        try await Task.sleep(for: .milliseconds(50))
        // "d" is free, but an earlier waiter wants it: a newcomer does not overtake that waiter.
        let third = Task { await locks.acquire(["d"]); log.add("d") }
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(log.all, [], "both wait while 'b' is held")
        XCTAssertEqual(locks.held, ["a", "b", "c"])

        locks.release(["a", "b"])
        await second.value
        XCTAssertEqual(log.all, ["b,d"])
        locks.release(["b", "d"])
        await third.value
        XCTAssertEqual(log.all, ["b,d", "d"])
        locks.release(["d"])
        locks.release(["c"])
        XCTAssertEqual(locks.held, [])
    }
}
