import ArgumentParser
import FHIRModel
import Foundation
import GMCrypto
import HealthCard
import HL7v2
import Hummingbird
import Logging

/// Helpers for the benchmarks under `bench/`: baselines measured in the same run as the platform.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark helpers (baselines for bench/).",
        subcommands: [HTTPBaseline.self, GMThroughput.self, HL7Bundles.self, ChangeFeedBench.self])
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

/// The FHIR transaction the gateway commits for each HL7 message, so that bench/mllp.py's HTTP
/// baseline posts the very same content as its MLLP run.
struct HL7Bundles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hl7-bundles",
        abstract: "Read ER7 messages (one JSON string per line) from stdin; print each one's transaction Bundle as a JSON line.")

    @Option(help: "The sending facility (the sender's client facility).") var facility: String

    func run() throws {
        let mapping = V2ToFHIR(facility: facility)
        var out = [UInt8]()
        while let line = readLine(strippingNewline: true) {
            guard case .string(let text)? = try? JSONParser.parse(Array(line.utf8)) else {
                throw ValidationError("Each line must be one JSON string (an ER7 message)")
            }
            out += JSONWriter.bytes(try mapping.bundle(for: try ER7.parse(text)))
            out.append(UInt8(ascii: "\n"))
            if out.count > 1 << 20 {
                FileHandle.standardOutput.write(Data(out))
                out.removeAll(keepingCapacity: true)
            }
        }
        FileHandle.standardOutput.write(Data(out))
    }
}

/// SM3 and SM4 throughput of the platform's own implementations (bench/gmcrypto.py compares them
/// with `openssl speed` in the same run).
struct GMThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gm", abstract: "Print SM3 and SM4-ECB/CBC/GCM throughput in MB/s and QR PNGs per second as JSON.")

    @Option(help: "Bytes per call (as `openssl speed -bytes`).") var bytes = 8192
    @Option(help: "Seconds per algorithm.") var seconds = 2.0

    func run() async throws {
        let data = [UInt8](repeating: 0x5A, count: bytes)
        let sm4 = try SM4(key: [UInt8](repeating: 7, count: 16))
        let iv = [UInt8](repeating: 1, count: 16)
        var sink: UInt8 = 0
        func measure(_ body: () throws -> [UInt8]) rethrows -> Double {
            let start = Date()
            var done = 0
            while Date().timeIntervalSince(start) < seconds {
                sink ^= try body()[0]
                done += bytes
            }
            return Double(done) / Date().timeIntervalSince(start) / 1_000_000
        }
        let results: [(String, Double)] = [
            ("sm3", measure { SM3.hash(data) }),
            ("sm4-ecb", try measure { try sm4.encryptECB(data) }),
            ("sm4-cbc", try measure { try sm4.encryptCBC(data, iv: iv) }),
            ("sm4-gcm", try measure { try sm4.sealGCM(data, nonce: Array(iv.prefix(12))).ciphertext }),
        ]
        // QR codes of dynamic card texts (99 characters, level M), as PNG at 8 pixels per module.
        let text = String(repeating: "98FF9F2C05145CB9", count: 4) + ":0:" + String(repeating: "6A1F0C3B", count: 4)
        var codes = 0, pngs = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let code = try QRCode(text, level: .medium)
            sink ^= code.png(scale: 8)[30]
            codes += 1
        }
        pngs = Int(Double(codes) / Date().timeIntervalSince(start))
        print("{" + results.map { "\"\($0.0)\": \(String(format: "%.1f", $0.1))" }.joined(separator: ", ")
              + ", \"qr_png_per_s\": \(pngs), \"sink\": \(sink)}")
    }
}
