import Foundation
import XCTest

/// The module graph of ADR 021, as the sources import it: the core knows no channel and no HTTP;
/// channels and domains stand on the core beside each other, never importing one another, HTTP or
/// the wiring; HTTPAPI does not wire. (SwiftPM refuses cycles; this keeps the arrows that a
/// dependency list alone would allow out as well.)
final class ModuleGraphTests: XCTestCase {
    /// Targets on the core; the domains of the next issues join this list.
    static let domains = ["Gateway", "Cards", "BulkImport", "Terminology", "Notifications", "Sharing"]
    static let http = ["Hummingbird", "HummingbirdCore", "HummingbirdTLS", "HummingbirdWebSocket", "HTTPAPI", "NIOHTTP1", "HTTPTypes"]
    /// A domain that calls out over HTTP as a client (rest-hook delivery, ADR 023) uses NIO's HTTP
    /// types for its requests; it still serves nothing.
    static let outboundHTTP: [String: Set<String>] = ["Notifications": ["NIOHTTP1"]]

    static func imports(of target: String) throws -> [String: Set<String>] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources").appendingPathComponent(target)
        let files = try XCTUnwrap(FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil), target)
        var found: [String: Set<String>] = [:]
        for case let url as URL in files where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ").filter { !$0.hasPrefix("@") }
                if words.count == 2, words[0] == "import" {
                    found[url.lastPathComponent, default: []].insert(String(words[1]))
                }
            }
        }
        XCTAssertFalse(found.isEmpty, "the scan found the sources of \(target)")
        return found
    }

    func test_theCore_importsNoChannelDomainOrHTTP() throws {
        let forbidden = Set(Self.domains + Self.http + ["Server", "HL7v2", "HealthCard", "GMCrypto"])
        for (file, modules) in try Self.imports(of: "Platform") {
            XCTAssertEqual(modules.intersection(forbidden), [], "Platform/\(file)")
        }
    }

    func test_domains_standOnTheCore_besideEachOther() throws {
        for domain in Self.domains {
            let forbidden = Set(Self.domains.filter { $0 != domain } + Self.http + ["Server"]).subtracting(Self.outboundHTTP[domain] ?? [])
            let imports = try Self.imports(of: domain)
            for (file, modules) in imports {
                XCTAssertEqual(modules.intersection(forbidden), [], "\(domain)/\(file)")
            }
            XCTAssertTrue(imports.values.contains { $0.contains("Platform") }, "\(domain) builds on the core")
        }
    }

    func test_HTTPAPI_doesNotWire() throws {
        for (file, modules) in try Self.imports(of: "HTTPAPI") {
            XCTAssertFalse(modules.contains("Server"), "HTTPAPI/\(file)")
        }
    }
}
