import FHIRModel
import Foundation
import Platform
@testable import Store
import XCTest

final class PointReaderTests: XCTestCase {
    func test_readsUsePreparedStatements_withoutRepreparing() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("huitong-pr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try await SQLiteStore.open(path: dir.appendingPathComponent("db.sqlite").path)
        let pipeline = IngestPipeline()
        var writes: [PreparedWrite] = []
        for i in 0..<50 {
            writes.append(try pipeline.prepare(try JSONParser.parse(#"{"resourceType":"Patient","gender":"male"}"#),
                                               type: "Patient", id: "p\(i)", method: "PUT"))
        }
        _ = try await store.commit(WriteUnit(writes: writes))
        for round in 0..<4 {
            for i in 0..<50 {
                let record = try await store.read(ResourceKey("Patient", "p\(i)"))
                XCTAssertEqual(record?.version, 1)
                let v = try await store.vread(ResourceKey("Patient", "p\(i)"), version: 1)
                XCTAssertEqual(v?.version, 1, "round \(round)")
            }
        }
        // At most one re-prepare per statement and connection (the schema seen at open may be stale);
        // never one per call: a re-prepare costs more than the lookup.
        XCTAssertLessThanOrEqual(store.pointReader.reprepareCount(), 8, "400 reads")
        try await store.close()
    }
}
