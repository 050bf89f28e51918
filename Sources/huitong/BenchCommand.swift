import ArgumentParser
import Hummingbird
import Logging

/// Helpers for the benchmarks under `bench/`: baselines measured in the same run as the platform.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark helpers (baselines for bench/).",
        subcommands: [HTTPBaseline.self])
}

/// A bare Hummingbird endpoint returning a constant body: the ceiling for read-by-id.
struct HTTPBaseline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-baseline",
        abstract: "Serve GET /* with a constant FHIR JSON body of the given size (no store).")

    @Option var host = "127.0.0.1"
    @Option var port = 8081
    @Option(help: "Body size in bytes.") var bytes = 1500

    func run() async throws {
        let filler = String(repeating: "x", count: max(0, bytes - 40))
        let body = ByteBuffer(string: "{\"resourceType\":\"Basic\",\"text\":\"\(filler)\"}")
        let router = Router()
        router.get("**") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/fhir+json; charset=utf-8"], body: .init(byteBuffer: body))
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
        try await app.runService()
    }
}
