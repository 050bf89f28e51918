import Access
import ArgumentParser
import FHIRModel
import Foundation
import Logging
import Platform
import Store
import Synchronization

/// `huitong bench change-feed`: how long a committed change takes to reach a consumer's handler
/// through the change-feed dispatcher (ADR 020), at a steady write rate. Writers commit single
/// Observations through the write pipeline at `--rate` per second; the time of each commit's
/// acknowledgement is kept; two consumers see the same changes in the same run: the dispatcher's
/// (woken by the store's change signal) and, as the baseline, one that asks the feed every
/// millisecond whatever happens (the best a poller can do, at the cost of a query per ms).
/// Prints one JSON line per consumer: changes, p50, p99 and max latency in ms, and the ratio of
/// the dispatcher's p99 to the poller's.
struct ChangeFeedBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change-feed",
        abstract: "Latency from commit to a change-feed consumer's handler at a steady write rate.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(help: "Changes committed per second.") var rate = 1000
    @Option(help: "How long to write, in seconds.") var seconds = 10
    @Option(help: "Concurrent writers.") var writers = 16
    @Option(help: "Changes per committed unit (a transaction of that many Observations).") var batch = 1

    final class Latencies: Sendable {
        private let state = Mutex<(acked: [String: ContinuousClock.Instant], seen: [String: [Double]])>(([:], [:]))

        func acked(_ id: String, at instant: ContinuousClock.Instant) { state.withLock { $0.acked[id] = instant } }

        /// A consumer saw these changes now (an id not yet acknowledged counts from now: 0 ms).
        func seen(_ consumer: String, _ changes: [ResourceChange]) {
            let now = ContinuousClock.now
            state.withLock { s in
                for change in changes {
                    let acked = s.acked[change.key.id] ?? now
                    let d = now - acked
                    let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
                    s.seen[consumer, default: []].append(max(ms, 0))
                }
            }
        }

        func report(_ consumer: String) -> (count: Int, p50: Double, p99: Double, max: Double) {
            let values = state.withLock { $0.seen[consumer] ?? [] }.sorted()
            guard !values.isEmpty else { return (0, 0, 0, 0) }
            func quantile(_ q: Double) -> Double { values[min(values.count - 1, Int(Double(values.count) * q))] }
            return (values.count, quantile(0.5), quantile(0.99), values.last!)
        }
    }

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let store = try await storeOptions.open(logger: logger)
        let latencies = Latencies()
        let dispatcher = ChangeFeedDispatcher(store: store, consumers: [
            ChangeConsumer(name: "bench-dispatched") { latencies.seen("dispatched", $0) },
        ], logger: logger)
        // Positions start at the end of what the store already holds.
        for name in ["bench-dispatched", "bench-polled"] {
            while try await store.consumeChanges(consumer: name, limit: 10_000, { _ in }) > 0 {}
        }
        let dispatching = Task { await dispatcher.run() }
        let polling = Task {
            while !Task.isCancelled {
                _ = try? await store.consumeChanges(consumer: "bench-polled", limit: 500) { latencies.seen("polled", $0) }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        let service = FHIRService(store: store, matching: nil, principal: .platform, auditing: false)
        let perWriter = Double(rate) / Double(writers * batch)
        let interval = Duration.nanoseconds(Int64(1e9 / perWriter))
        let end = ContinuousClock.now + .seconds(seconds)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    var next = ContinuousClock.now
                    var n = 0
                    while ContinuousClock.now < end {
                        var requests: [WriteRequest] = []
                        for _ in 0..<batch {
                            n += 1
                            let id = "cf-\(w)-\(n)-\(UInt32.random(in: 0...UInt32.max))"
                            let body = try JSONParser.parse(Array(#"{"resourceType":"Observation","id":"\#(id)","status":"final","code":{"text":"bench"},"valueQuantity":{"value":\#(n)}}"#.utf8))
                            requests.append(WriteRequest(key: ResourceKey("Observation", id), method: "PUT", resource: body))
                        }
                        _ = try await service.writePipeline.write(requests, as: .transaction)
                        let now = ContinuousClock.now
                        for request in requests { latencies.acked(request.key.id, at: now) }
                        next += interval
                        if next > ContinuousClock.now { try await Task.sleep(until: next) }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await Task.sleep(for: .seconds(2))   // the last changes reach both consumers
        dispatching.cancel()
        polling.cancel()
        await dispatching.value
        await polling.value
        let d = latencies.report("dispatched"), p = latencies.report("polled")
        func line(_ name: String, _ r: (count: Int, p50: Double, p99: Double, max: Double)) -> String {
            String(format: #"{"consumer":"%@","changes":%d,"changes_per_s":%.0f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f}"#,
                   name, r.count, Double(r.count) / Double(seconds), r.p50, r.p99, r.max)
        }
        print(line("dispatcher (signal)", d))
        print(line("baseline: poll every 1 ms", p))
        print(String(format: #"{"dispatcher_p99_over_poll_p99":%.2f}"#, p.p99 > 0 ? d.p99 / p.p99 : 0))
        try await store.close()
    }
}
