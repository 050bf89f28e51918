import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) @testable import Store
import StoreTestSupport
import XCTest

/// A store on a new SQLite file in its own temporary folder (the caller removes the folder).
func openThrowawayStore() async throws -> (SQLiteStore, URL) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("huitong-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return (try await SQLiteStore.open(path: dir.appendingPathComponent("db.sqlite").path), dir)
}

final class PointReaderTests: XCTestCase {
    func test_readsUsePreparedStatements_withoutRepreparing() async throws {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
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

    /// Statistics analysed on a nearly empty store (a few resources loaded, then a restart) made
    /// every point read scan the store as it grew: the reads are planned as key lookups whatever
    /// the statistics say, and a store opened with such statistics drops them.
    func test_tinyStatistics_neitherScanNorSurviveOpen() async throws {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pipeline = IngestPipeline()
        let writes = try (0..<1).map { i in
            try pipeline.prepare(try JSONParser.parse(#"{"resourceType":"Patient","gender":"male"}"#), type: "Patient", id: "p\(i)", method: "PUT")
        }
        _ = try await store.commit(WriteUnit(writes: writes))
        try await store.close()
        let path = dir.appendingPathComponent("db.sqlite").path
        let raw = try SQLiteRawConnection(path: path)
        try raw.exec("ANALYZE")
        XCTAssertEqual(try raw.query("SELECT stat FROM sqlite_stat1 WHERE tbl = 'resource' AND idx = 'resource_key'", []).first?.first?.text,
                       "1 1 1", "the statistics of one resource")
        for (sql, binds) in [(SQLitePointReader.readSQL, 2), (SQLitePointReader.vreadSQL, 3)] {
            let plan = try raw.query("EXPLAIN QUERY PLAN " + sql, Array(repeating: SQLValue.text("1"), count: binds)).compactMap { $0.last?.text }
            XCTAssertFalse(plan.isEmpty)
            XCTAssertFalse(plan.contains { $0.hasPrefix("SCAN") }, "\(plan)")
        }
        // The join the point reads used to be planned as two scans with these statistics.
        let join = try raw.query("EXPLAIN QUERY PLAN SELECT h.content FROM resource r JOIN resource_history h ON h.hid = r.hid "
                                 + "WHERE r.type = ? AND r.id = ?", [.text("Patient"), .text("p0")]).compactMap { $0.last?.text }
        XCTAssertTrue(join.contains { $0.hasPrefix("SCAN") }, "\(join)")
        raw.close()
        let reopened = try await SQLiteStore.open(path: path)
        let left = try await reopened.reads.scalar("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'resource'")
        XCTAssertEqual(left, 0)
        let record = try await reopened.read(ResourceKey("Patient", "p0"))
        XCTAssertEqual(record?.version, 1)
        let version = try await reopened.vread(ResourceKey("Patient", "p0"), version: 1)
        XCTAssertEqual(version?.version, 1)
        try await reopened.close()
    }
}

final class WriteAheadLogTests: XCTestCase {
    /// The writer checkpoints as it goes: a server that writes all day must not grow its WAL file
    /// (and every read's WAL lookups) without bound, and what was checkpointed is in the database.
    func test_walIsCheckpointedWhileWriting_andDataSurvivesReopen() async throws {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pipeline = IngestPipeline()
        let address = String(repeating: "某某路某某号", count: 40)
        // ~100 MB of WAL frames: past the 64 MB at which a commit checkpoints (ADR 003).
        for unit in 0..<480 {
            var writes: [PreparedWrite] = []
            for i in 0..<25 {
                let json = try JSONParser.parse(#"{"resourceType":"Patient","address":[{"text":"\#(address)\#(unit)-\#(i)"}]}"#)
                writes.append(try pipeline.prepare(json, type: "Patient", id: "p\(unit)-\(i)", method: "PUT"))
            }
            _ = try await store.commit(WriteUnit(writes: writes))
        }
        let path = dir.appendingPathComponent("db.sqlite").path
        let size = { (p: String) in ((try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? Int) ?? 0 }
        XCTAssertGreaterThan(size(path), 8 << 20, "Patients were checkpointed into the database file")
        XCTAssertLessThan(size(path + "-wal"), 80 << 20, "the WAL restarts instead of growing")
        try await store.close()
        let reopened = try await SQLiteStore.open(path: path)
        let last = try await reopened.read(ResourceKey("Patient", "p479-24"))
        XCTAssertEqual(last?.version, 1)
        try await reopened.close()
    }
}

final class ReindexTests: XCTestCase {
    /// `huitong reindex` after the rules changed: each resource's rows become exactly the new ones,
    /// on every backend (PostgreSQL deletes and inserts them in one statement).
    func test_reindex_replacesEachResourcesRows_withTheNewExtraction() async throws {
        try await withEachBackend { test in
            let pipeline = IngestPipeline()
            for id in ["a", "b"] {
                let json = try JSONParser.parse(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"\#(id)"}]}"#)
                _ = try await test.store.commit(WriteUnit(writes: [try pipeline.prepare(json, type: "Patient", id: id, method: "PUT")]))
            }
            func found(_ code: String) async throws -> [String] {
                let query = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: "s", code: code)])])
                return try await test.store.search(query, limit: 5).map(\.id).sorted()
            }
            // New rules: the identifier is indexed under "v-" + its value, and "both" for every Patient.
            let done = try await test.store.reindex(type: "Patient", extract: { object, _ in
                let value = object["identifier"]?.arrayValue?.first?["value"]?.stringValue ?? ""
                return [IndexEntry("identifier", .token(system: "s", code: "v-" + value)),
                        IndexEntry("identifier", .token(system: "s", code: "both"))]
            }, progress: { _, _ in })
            XCTAssertEqual(done, 2)
            let old = try await found("a"), new = try await found("v-a"), shared = try await found("both")
            XCTAssertEqual(old, [], "the old rows are gone")
            XCTAssertEqual(new, ["a"])
            XCTAssertEqual(shared, ["a", "b"])
        }
    }

    func test_reindex_rebuildsLostIndexRows_fromStoredContent() async throws {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pipeline = IngestPipeline()
        let json = try JSONParser.parse(#"{"resourceType":"Patient","identifier":[{"system":"s","value":"v"}]}"#)
        _ = try await store.commit(WriteUnit(writes: [try pipeline.prepare(json, type: "Patient", id: "x", method: "PUT")]))
        let query = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: "s", code: "v")])])
        var found = try await store.search(query, limit: 5)
        XCTAssertEqual(found, [ResourceKey("Patient", "x")])
        // Lose the index (as after adding a parameter, or a damaged index), then rebuild it.
        try await store.writer.replaceIndex([1: ("Patient", [])])
        found = try await store.search(query, limit: 5)
        XCTAssertEqual(found, [])
        let extractor = IndexExtractor()
        let done = try await store.reindex(type: "Patient", extract: { extractor.entries(for: $0, type: $1) }, progress: { _, _ in })
        XCTAssertEqual(done, 1)
        found = try await store.search(query, limit: 5)
        XCTAssertEqual(found, [ResourceKey("Patient", "x")])
        try await store.close()
    }
}
