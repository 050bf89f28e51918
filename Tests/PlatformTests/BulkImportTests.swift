import Access
@testable import BulkImport
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store
import StoreTestSupport
import Terminology
import XCTest

/// `huitong import` of NDJSON: chunks commit in order, each whole; a bad line stops the file after
/// the chunks before its own, and is named by its line in the file (it was named by its place in
/// its chunk: `line[41]` for line 1,042).
final class BulkImportTests: XCTestCase {
    /// Smaller than the default, so that files of a few chunks stay quick in a debug build.
    static let chunkSize = 500

    /// Observation lines o1…on (line k is `o<k>`), `bad` replacing the lines it names.
    static func file(_ n: Int, bad: [Int: String] = [:]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString).ndjson").path
        let lines = (1...n).map { k in
            bad[k] ?? #"{"resourceType":"Observation","id":"o\#(k)","status":"final","code":{"text":"血红蛋白"}}"#
        }
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func stored(_ store: any ResourceStore) async throws -> Set<String> {
        Set(try await store.search(try SearchQueryParser().parse(type: "Observation", query: "status=final"), limit: 10_000).map(\.id))
    }

    func test_everyLineIsStored_acrossChunks() async throws {
        try await withEachBackend { test in
            let n = 3 * Self.chunkSize + 7
            let path = try Self.file(n)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            XCTAssertNil(result.error)
            XCTAssertEqual(result.resources, n)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids, Set((1...n).map { "o\($0)" }))
        }
    }

    func test_anInvalidResource_isNamedByItsLine_andItsChunkIsNotStored() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let line = 2 * size + 42
            // Two blank lines (one CRLF's) count as lines but hold no resource: the chunks are
            // lines 1-502, 503-1002 and from 1003 on.
            let path = try Self.file(3 * size, bad: [3: "", 7: " \r",
                                                     line: #"{"resourceType":"Observation","id":"x","status":"no-such-status","code":{"text":"x"}}"#])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            let error = try XCTUnwrap(result.error)
            XCTAssertTrue(error.contains("line[\(line)].status"), error)
            // What is in, and where to go on from: sent again whole, id-less lines would be stored twice.
            XCTAssertEqual(result.resources, 2 * size)
            XCTAssertTrue(error.contains("committed before it: \(2 * size) resources (lines 1-\(2 * size + 2))"), error)
            XCTAssertTrue(error.contains("tail -n +\(2 * size + 3) \(path)"), error)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids, Set((1...(2 * size + 2)).filter { $0 != 3 && $0 != 7 }.map { "o\($0)" }),
                           "the two chunks before the bad line's, none of its own")
        }
    }

    func test_aLineWithoutResourceType_isNamedByItsLine() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let path = try Self.file(2 * size, bad: [size + 5: #"{"id":"x","status":"final"}"#])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            let error = try XCTUnwrap(result.error)
            XCTAssertTrue(error.contains("line[\(size + 5)]") && error.contains("resourceType"), error)
            XCTAssertEqual(result.resources, size)
            XCTAssertTrue(error.contains("(lines 1-\(size))") && error.contains("tail -n +\(size + 1)"), error)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids, Set((1...size).map { "o\($0)" }))
        }
    }

    func test_aLineThatIsNotJSON_stopsTheFile_afterTheChunksBeforeIt() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let line = size + 10
            let path = try Self.file(3 * size, bad: [line: #"{"resourceType":"Observation","id":"#])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            let error = try XCTUnwrap(result.error)
            XCTAssertTrue(error.contains("line \(line):"), error)
            XCTAssertEqual(result.resources, size)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids, Set((1...size).map { "o\($0)" }), "the chunk before the bad line is committed; nothing from its own")
        }
    }

    func test_aBadLineInTheFirstChunk_reportsNothingCommitted() async throws {
        try await withEachBackend { test in
            let path = try Self.file(20, bad: [12: #"{"resourceType":"Observation","status":"final"}"#])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            let error = try XCTUnwrap(result.error)
            XCTAssertTrue(error.contains("line[12]") && error.contains("nothing from this file was committed"), error)
            XCTAssertEqual(result.resources, 0)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids, [])
        }
    }

    /// A collection Bundle is committed in the same chunks: a bad entry's error says which are in.
    func test_aCollectionBundle_reportsTheEntriesCommittedBeforeABadOne() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let entries = (0..<(2 * size)).map { k in
                k == size + 3 ? #"{"resource":{"resourceType":"Observation","status":"bad","code":{"text":"x"}}}"#
                              : #"{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}}}"#
            }
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString).json").path
            try Data((#"{"resourceType":"Bundle","type":"collection","entry":["# + entries.joined(separator: ",") + "]}").utf8)
                .write(to: URL(fileURLWithPath: path))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            let error = try XCTUnwrap(result.error)
            XCTAssertTrue(error.contains("Bundle.entry[\(size + 3)].status"), error)
            XCTAssertTrue(error.contains("committed before it: \(size) resources (Bundle.entry[0..<\(size)])"), error)
            XCTAssertEqual(result.resources, size)
            let ids = try await stored(test.store)
            XCTAssertEqual(ids.count, size)
        }
    }

    // MARK: the next chunk prepared while one commits

    func test_aResourceWrittenTwice_keepsItsLaterLine_acrossChunks() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let path = try Self.file(3 * size, bad: [
                2 * size + 1: #"{"resourceType":"Observation","id":"o3","status":"amended","code":{"text":"血红蛋白"}}"#])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = await BulkImporter(service: FHIRService(store: test.store, matching: nil, principal: .platform), chunkSize: Self.chunkSize).importFile(path)
            XCTAssertNil(result.error)
            let stored = try await test.store.read(ResourceKey("Observation", "o3"))
            XCTAssertEqual(stored?.version, 2)
            XCTAssertTrue(String(decoding: try XCTUnwrap(stored?.content).readableBytesView, as: UTF8.self).contains(#""status":"amended""#))
        }
    }

    /// Reads the store while preparing the first Observation of the second chunk: the last of the
    /// first must be committed by then. It says nothing of what it reads, so the importer waits.
    struct LookingBack: WriteEnricher {
        let store: any ResourceStore
        let first: String
        let before: String

        func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
            if resource["id"]?.stringValue == first, try await store.read(ResourceKey("Observation", before)) == nil {
                throw FHIRError(.invalid, code: "processing", "prepared before Observation/\(before) was committed")
            }
            return resource
        }
    }

    func test_aDomainThatDoesNotSayWhatItReads_seesEveryEarlierChunkCommitted() async throws {
        try await withEachBackend { test in
            let size = Self.chunkSize
            let path = try Self.file(4 * size)
            defer { try? FileManager.default.removeItem(atPath: path) }
            var service = FHIRService(store: test.store, matching: nil, principal: .platform)
            service.enricher = EnricherChain([FacilityCodeMaps(store: test.store),
                                              LookingBack(store: test.store, first: "o\(2 * size + 1)", before: "o\(2 * size)")])
            let result = await BulkImporter(service: service, chunkSize: Self.chunkSize).importFile(path)
            XCTAssertNil(result.error)
            XCTAssertEqual(result.resources, 4 * size)
        }
    }

    func test_aChunkIsPreparedEarly_onlyWhenItReadsNothingTheChunkBeforeWrites() async throws {
        try await withEachBackend { test in
        let store = test.store
        var service = FHIRService(store: store, matching: nil, principal: .platform)
        service.enricher = EnricherChain([FacilityCodeMaps(store: store)])
        let pipeline = service.writePipeline
        func writes(_ type: String, _ ids: [String]) -> [WriteRequest] {
            ids.map { WriteRequest(key: ResourceKey(type, $0), method: "PUT", resource: .object(JSONObject([("resourceType", .string(type))]))) }
        }
        let results = Set(writes("Observation", ["o1", "o2"]).map(\.key))
        // Results after results: both cores.
        XCTAssertTrue(BulkImporter.independent(writes("Observation", ["o3"]), writtenTypes: ["Observation"], writtenKeys: results,
                                               reads: pipeline.reads(preparing:)))
        // The same result again: after it.
        XCTAssertFalse(BulkImporter.independent(writes("Observation", ["o2"]), writtenTypes: ["Observation"], writtenKeys: results,
                                                reads: pipeline.reads(preparing:)))
        // After Patients (and their Persons): a result's patient may be named by an identifier.
        XCTAssertFalse(BulkImporter.independent(writes("Observation", ["o3"]), writtenTypes: ["Patient", "Person"], writtenKeys: [],
                                                reads: pipeline.reads(preparing:)))
        // After a facility's ConceptMaps: its local codes are mapped with them.
        XCTAssertFalse(BulkImporter.independent(writes("Condition", ["c1"]), writtenTypes: ["ConceptMap"], writtenKeys: [],
                                                reads: pipeline.reads(preparing:)))
        // A domain that does not say what it reads: never early.
        service.enricher = EnricherChain([FacilityCodeMaps(store: store), LookingBack(store: store, first: "", before: "")])
        XCTAssertNil(service.writePipeline.reads(preparing: "Observation"))
        XCTAssertFalse(BulkImporter.independent(writes("Observation", ["o3"]), writtenTypes: ["Practitioner"], writtenKeys: [],
                                                reads: service.writePipeline.reads(preparing:)))
        }
    }
}

/// `huitong reindex` decides records stored before a sensitive category (or a way of naming one)
/// was added by the current categories: a document stored unlabelled gets its label in the rows
/// the access decision reads, without being written again.
final class ReindexLabelTests: XCTestCase {
    func test_aStoredRecord_isLabelledByTheCurrentCategories_whenReindexed() throws {
        let document = try XCTUnwrap(JSONParser.parse(#"{"resourceType":"DocumentReference","status":"current","description":"HIV感染 随访记录","subject":{"reference":"Patient/p1"}}"#).objectValue)
        let before = IngestPipeline(sensitive: SensitiveCategories(categories: SensitiveCategories.defaults.categories, textMatching: false))
        func labels(_ entries: [IndexEntry]) -> Set<String> {
            Set(entries.compactMap { e in
                guard e.parameter == AccessColumns.sensitiveParameter, case .token(_, let code) = e.value else { return nil }
                return code
            })
        }
        // Stored as the build before would have: no label.
        XCTAssertEqual(labels(before.indexEntries(forStored: document, type: "DocumentReference")), [])
        XCTAssertEqual(labels(IngestPipeline().indexEntries(forStored: document, type: "DocumentReference")), ["HIV"])
        // A label it carries stays (labels are only added).
        var labelled = document
        labelled["meta"] = .object(JSONObject([("security", .array([.object(JSONObject([("system", .string(SensitiveCategories.labelSystem)), ("code", .string("PSY"))]))]))]))
        XCTAssertEqual(labels(IngestPipeline().indexEntries(forStored: labelled, type: "DocumentReference")), ["HIV", "PSY"])
    }
}
