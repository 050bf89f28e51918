import Foundation
import XCTest

/// `ResourceStore.commit` is SPI (`@_spi(WritePipeline)`): the compiler refuses it to every file
/// that does not import the SPI by name (ADR 017). This test keeps the list of such files to the
/// stores themselves and the write pipeline, so that a new channel cannot quietly import it.
final class CommitVisibilityTests: XCTestCase {
    func test_onlyTheStoresAndTheWritePipeline_seeCommit() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let files = try XCTUnwrap(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        var importing: [String] = []
        for case let url as URL in files where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            if text.contains("@_spi(WritePipeline) import") || text.contains("@_spi(WritePipeline) @testable import") {
                importing.append(String(url.path.dropFirst(sources.path.count + 1)))
            }
        }
        XCTAssertFalse(importing.isEmpty, "the scan found the sources")
        for file in importing {
            let allowed = file.hasPrefix("Store/") || file.hasPrefix("StorePostgres/") || file == "Platform/Ingest/WritePipeline.swift"
            XCTAssertTrue(allowed, "\(file) imports the store's commit; resources are committed only by the WritePipeline")
        }
        XCTAssertTrue(importing.contains("Platform/Ingest/WritePipeline.swift"))
    }
}
