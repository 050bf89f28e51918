import FHIRModel
import Foundation
import NIOCore
import Platform
@_spi(WritePipeline) @testable import Store
import StoreTestSupport
import XCTest

/// Versions of 100 KB or more are kept in files beside the database (ADR 025); every read path
/// gives back the exact bytes, as for content in the row.
final class ContentFilesTests: XCTestCase {
    func binary(_ size: Int, seed: UInt8) -> String {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed }
        return #"{"resourceType":"Binary","contentType":"application/hl7-v3+xml","data":""# + Data(bytes).base64EncodedString() + #""}"#
    }

    func test_largeContent_inFiles_readBackByEveryPath_andAfterReopen() async throws {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pipeline = IngestPipeline()
        func put(_ json: String, _ type: String, _ id: String) throws -> PreparedWrite {
            try pipeline.prepare(try JSONParser.parse(json), type: type, id: id, method: "PUT")
        }
        _ = try await store.commit(WriteUnit(writes: [try put(binary(300_000, seed: 1), "Binary", "big"),
                                                      try put(binary(1_000, seed: 2), "Binary", "small"),
                                                      try put(binary(200_000, seed: 3), "Binary", "gone")]))
        _ = try await store.commit(WriteUnit(writes: [try put(binary(400_000, seed: 4), "Binary", "big")]))
        _ = try await store.commit(WriteUnit(writes: [pipeline.prepareDelete(ResourceKey("Binary", "gone"))]))

        func data(_ record: ResourceRecord?) throws -> String? {
            guard let content = record?.content else { return nil }
            return try JSONParser.parse(content.readableBytesView)["data"]?.stringValue
        }
        func expected(_ size: Int, _ seed: UInt8) throws -> String? { try JSONParser.parse(binary(size, seed: seed))["data"]?.stringValue }

        // Stored as a marker in the row, the bytes in the file it names.
        let path = dir.appendingPathComponent("db.sqlite").path
        let raw = try SQLiteRawConnection(path: path, readOnly: true)
        let rows = try raw.query("SELECT h.hid, h.content FROM resource_history h JOIN resource r ON r.rid = h.rid WHERE r.id = 'big' ORDER BY h.version", [])
        XCTAssertEqual(rows.count, 2)
        for row in rows {
            let stored = try XCTUnwrap(row[1].blob)
            XCTAssertLessThan(stored.readableBytes, 100, "a marker, not the content")
            let file = try XCTUnwrap(stored.withUnsafeReadableBytes { ContentFiles.file($0) })
            XCTAssertEqual(file.name, ContentFiles.name(hid: try XCTUnwrap(row[0].integer)))
            let attributes = try FileManager.default.attributesOfItem(atPath: path + "-content/" + file.name)
            XCTAssertEqual(attributes[.size] as? Int, file.size)
        }
        let small = try raw.query("SELECT h.content FROM resource_history h JOIN resource r ON r.rid = h.rid WHERE r.id = 'small'", [])
        XCTAssertEqual(try small.first?.first?.blob.map { try JSONParser.parse($0.readableBytesView)["resourceType"]?.stringValue }, "Binary",
                       "small content stays in the row")
        raw.close()

        for round in ["open", "reopened"] {
            let store = round == "open" ? store : try await SQLiteStore.open(path: path)
            let big = try await store.read(ResourceKey("Binary", "big"))
            XCTAssertEqual(big?.version, 2)
            XCTAssertEqual(try data(big), try expected(400_000, 4), round)
            let first = try await store.vread(ResourceKey("Binary", "big"), version: 1)
            XCTAssertEqual(try data(first), try expected(300_000, 1), round)
            let small = try await store.read(ResourceKey("Binary", "small"))
            XCTAssertEqual(try data(small), try expected(1_000, 2), round)
            let keys = try await store.read(keys: [ResourceKey("Binary", "big"), ResourceKey("Binary", "small")])
            XCTAssertEqual(try data(keys[ResourceKey("Binary", "big")]), try expected(400_000, 4), round)
            let history = try await store.history(HistoryQuery(type: "Binary", id: "big"))
            XCTAssertEqual(try history.records.map(data), [try expected(400_000, 4), try expected(300_000, 1)], round)
            let gone = try await store.history(HistoryQuery(type: "Binary", id: "gone"))
            XCTAssertEqual(gone.records.map(\.deleted), [true, false], round)
            XCTAssertEqual(try data(gone.records.last), try expected(200_000, 3), round)
            let page = try await store.search(SearchQuery(type: "Binary", clauses: []), page: PageRequest(count: 10))
            XCTAssertEqual(Set(try page.records.compactMap(data)), [try expected(400_000, 4), try expected(1_000, 2)], round)
            // The exact bytes served, byte for byte, whichever path read them.
            XCTAssertEqual(big?.content, keys[ResourceKey("Binary", "big")]?.content)
            XCTAssertEqual(big?.content, page.records.first { $0.key.id == "big" }?.content)
            try await store.close()
        }
    }

    /// Stores one 150 KB Binary, lets `damage` change its content folder, and returns the storage
    /// error a read of it then gives (the test fails if the read succeeds).
    func readError(after damage: (_ folder: String) throws -> Void) async throws -> String? {
        let (store, dir) = try await openThrowawayStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let write = try IngestPipeline().prepare(try JSONParser.parse(binary(150_000, seed: 6)), type: "Binary", id: "b", method: "PUT")
        let outcome = try await store.commit(WriteUnit(writes: [write]))
        XCTAssertEqual(outcome.first?.version, 1)
        try damage(dir.appendingPathComponent("db.sqlite-content").path)
        var message: String?
        do {
            _ = try await store.read(ResourceKey("Binary", "b"))
            XCTFail("read without its whole content file")
        } catch StoreError.storage(let text) {
            message = text
        }
        try await store.close()
        return message
    }

    /// A content file cut short (a power loss before it reached the disk) is an error, not a shorter resource.
    func test_truncatedFile_isAStorageError() async throws {
        let message = try await readError { folder in
            let bucket = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: folder).first)
            let name = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: folder + "/" + bucket).first)
            let handle = try XCTUnwrap(FileHandle(forWritingAtPath: folder + "/" + bucket + "/" + name))
            try handle.truncate(atOffset: 1000)
            try handle.close()
        }
        XCTAssertTrue(message?.contains("has 1000 bytes") == true, message ?? "no error")
    }

    /// A content file gone missing is a storage error naming it, not an empty or wrong resource.
    func test_missingFile_isAStorageError() async throws {
        let message = try await readError { folder in try FileManager.default.removeItem(atPath: folder) }
        XCTAssertTrue(message?.contains("content file is missing") == true, message ?? "no error")
    }
}
