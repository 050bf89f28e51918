import FHIRModel
import Foundation
import NIOCore
import Platform
@_spi(WritePipeline) import Store
import StoreTestSupport
import XCTest

/// The reads the master index plans with (several records by key, records by token code, keys of
/// record numbers), on every backend. On SQLite they run on the writer's connection when it is
/// idle and on a reader's otherwise: either way a commit that has returned must be visible.
final class LinkageReadTests: XCTestCase {
    func patient(_ id: String, mrn: String, method: String = "PUT") throws -> PreparedWrite {
        let json = #"{"resourceType":"Patient","identifier":[{"system":"urn:test:mrn","value":"\#(mrn)"}],"gender":"female"}"#
        return try IngestPipeline().prepare(try JSONParser.parse(json), type: "Patient", id: id, method: method)
    }

    func test_readByKeys_agreesWithReadByKey() async throws {
        try await withEachBackend { test in
            let store = test.store
            _ = try await store.commit(WriteUnit(writes: try (0..<6).map { try patient("p\($0)", mrn: "m\($0)") }))
            _ = try await store.commit(WriteUnit(writes: [try patient("p1", mrn: "m1-changed")]))
            _ = try await store.commit(WriteUnit(writes: [IngestPipeline().prepareDelete(ResourceKey("Patient", "p2"))]))
            let keys = (0..<6).map { ResourceKey("Patient", "p\($0)") }
                + [ResourceKey("Patient", "absent"), ResourceKey("Patient", "p0\u{0}"), ResourceKey("Person", "p0")]
            let many = try await store.read(keys: keys + keys)
            XCTAssertEqual(Set(many.keys), Set(keys.prefix(6)), "absent keys, a key with a NUL and another type are left out")
            for key in keys {
                let one = try await store.read(key)
                XCTAssertEqual(many[key]?.version, one?.version, "\(key)")
                XCTAssertEqual(many[key]?.deleted, one?.deleted, "\(key)")
                XCTAssertEqual(many[key]?.content.map { String(buffer: $0) }, one?.content.map { String(buffer: $0) }, "\(key)")
            }
            XCTAssertEqual(many[ResourceKey("Patient", "p1")]?.version, 2)
            XCTAssertEqual(many[ResourceKey("Patient", "p2")]?.deleted, true)
            try await store.close()
        }
    }

    /// Read-your-writes while other units are committing (the SQLite writer is busy part of the
    /// time, and the lookups fall back to a reader connection then).
    func test_lookupsSeeEveryReturnedCommit_whileOtherUnitsAreWritten() async throws {
        try await withEachBackend { test in
            let store = test.store
            let others = try (0..<300).map { try patient("bg\($0)", mrn: "bg\($0)") }
            let background = Task {
                for write in others { _ = try await store.commit(WriteUnit(writes: [write])) }
            }
            for i in 0..<150 {
                let outcome = try await store.commit(WriteUnit(writes: [try patient("fg\(i)", mrn: "fg\(i)")]))
                let found = try await store.resources(of: "Patient", withToken: "identifier", codes: ["fg\(i)", "none"], limitPerCode: 5)
                XCTAssertEqual(found.matches.keys.sorted(), ["fg\(i)"], "commit \(i)")
                let rids = found.matches["fg\(i)"] ?? []
                XCTAssertEqual(rids.count, 1)
                let named = try await store.keys(ofRecords: rids)
                XCTAssertEqual(named.values.first, ResourceKey("Patient", "fg\(i)"))
                let read = try await store.read(keys: [ResourceKey("Patient", "fg\(i)")])
                XCTAssertEqual(read.values.first?.version, outcome[0].version)
            }
            try await background.value
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 450)
            try await store.close()
        }
    }
}
