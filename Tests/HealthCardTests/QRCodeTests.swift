import Foundation
@testable import HealthCard
import XCTest

/// Every code the encoder makes must decode back to its text with an independent decoder
/// (Debian's zbar-tools `zbarimg`): all ten versions and four levels, random payloads with Chinese
/// text, and the e-health card's QR texts.
final class QRCodeTests: XCTestCase {
    static let zbarimg = ["/usr/bin/zbarimg", "/usr/local/bin/zbarimg"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The bytes zbarimg reads from each PNG (one run for all files, in order).
    func decode(_ pngs: [[UInt8]]) throws -> [[UInt8]] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var results: [[UInt8]] = []
        for (i, png) in pngs.enumerated() {
            let path = dir.appendingPathComponent("\(i).png").path
            FileManager.default.createFile(atPath: path, contents: Data(png))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.zbarimg!)
            // Raw bytes, no character-set guessing.
            p.arguments = ["--raw", "-q", "-Sbinary", path]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            results.append([UInt8](data))
        }
        return results
    }

    func test_everyVersionAndLevel_decodesWithZbar() throws {
        guard Self.zbarimg != nil else { throw XCTSkip("zbarimg (Debian zbar-tools) is not installed") }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:-_/.张三欧阳娜娜电子健康卡一码通")
        var texts: [String] = []
        var codes: [QRCode] = []
        for level in QRCode.Level.allCases {
            for version in 1...10 {
                // A text that needs exactly this version: nearly the most bytes it holds.
                let maxBytes = (8 * QRCode.dataCapacity(version: version, level: level) - 4 - (version < 10 ? 8 : 16)) / 8
                var text = ""
                while true {
                    let next = text + String(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)])
                    guard next.utf8.count <= maxBytes else { break }
                    text = next
                }
                let code = try QRCode(text, level: level)
                XCTAssertEqual(code.version, version, "\(level) \(version)")
                XCTAssertEqual(code.size, 17 + 4 * version)
                texts.append(text)
                codes.append(code)
            }
        }
        // The e-health card's QR texts: a static code and a dynamic one.
        for text in ["98FF9F2C05145CB9305E9D8A57E072BB51180CA49E5BE5E9D41BCE3A9A571928:1",
                     "98FF9F2C05145CB9305E9D8A57E072BB51180CA49E5BE5E9D41BCE3A9A571928:0:6A1F0C3B9E8D7A6B5C4D3E2F1A0B9C8D"] {
            texts.append(text)
            codes.append(try QRCode(text, level: .medium))
        }
        let decoded = try decode(codes.map { $0.png(scale: 4) })
        for (i, text) in texts.enumerated() {
            var bytes = decoded[i]
            if bytes.last == 0x0A { bytes.removeLast() }
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), text, "version \(codes[i].version) level \(codes[i].level) mask \(codes[i].mask)")
        }
        XCTAssertEqual(Set(codes.map(\.mask)).count > 1, true, "the penalty score picks different masks")
    }

    func test_tooLong_andRenderings() throws {
        XCTAssertThrowsError(try QRCode(String(repeating: "x", count: 300), level: .low))
        let code = try QRCode("HUITONG", level: .high)
        let png = code.png(scale: 2)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let svg = code.svg()
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertTrue(svg.contains("viewBox=\"0 0 \(code.size + 8) \(code.size + 8)\""))
    }
}
