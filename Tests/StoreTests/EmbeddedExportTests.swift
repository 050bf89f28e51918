import FHIRModel
import Foundation
import NIOCore
import Platform
@_spi(WritePipeline) import Store
import StorePostgres
import StoreTestSupport
import XCTest

/// `huitong export`: an embedded store copied into PostgreSQL answers exactly as before.
final class EmbeddedExportTests: XCTestCase {
    func prepared(_ json: String, _ type: String, _ id: String, method: String = "PUT") throws -> PreparedWrite {
        try IngestPipeline().prepare(try JSONParser.parse(json), type: type, id: id, method: method)
    }

    func test_export_copiesEveryVersionIndexAndId_andPostgresContinuesAfterThem() async throws {
        guard TestBackend.postgresURL != nil else {
            throw XCTSkip("HUITONG_TEST_POSTGRES_URL is not set: the export to PostgreSQL was not tested")
        }
        let source = try await TestBackend.sqlite.openEmpty()
        let target = try await TestBackend.postgres.openEmpty()
        addTeardownBlock { await source.destroy(); await target.destroy() }
        let sqlite = try XCTUnwrap(source.store as? SQLiteStore)
        let postgres = try XCTUnwrap(target.store as? PostgresStore)
        // 2,500 patients (three batches), one updated twice, one deleted, observations referencing them.
        var writes: [PreparedWrite] = []
        for i in 0..<2500 {
            writes.append(try prepared(#"{"resourceType":"Patient","name":[{"family":"张\#(i)"}],"identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"id\#(i)"}]}"#, "Patient", "p\(i)"))
        }
        _ = try await sqlite.commit(WriteUnit(writes: writes))
        for v in 2...3 {
            _ = try await sqlite.commit(WriteUnit(writes: [try prepared(#"{"resourceType":"Patient","gender":"female","birthDate":"19\#(v)0"}"#, "Patient", "p1")]))
        }
        _ = try await sqlite.commit(WriteUnit(writes: [IngestPipeline().prepareDelete(ResourceKey("Patient", "p2"))]))
        _ = try await sqlite.commit(WriteUnit(writes: [try prepared(
            #"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p3"},"valueQuantity":{"value":5.4,"unit":"mmol/L"}}"#,
            "Observation", "o1")]))
        // A document of 150 KB: kept in a file beside the SQLite database (ADR 025), in the row on PostgreSQL.
        let document = Data((0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }).base64EncodedString()
        _ = try await sqlite.commit(WriteUnit(writes: [try prepared(
            #"{"resourceType":"Binary","contentType":"application/pdf","data":"\#(document)"}"#, "Binary", "b1")]))
        // A document stream (ADR 029), 1.5 MB, named by a committed version (a Binary whose stored
        // form names it is the platform's business; here the commit settles it): copied under its
        // id, and not pending. A second one no version names: copied pending, for the sweep.
        let streamed = (0..<1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let writer = try await sqlite.documentStreams.create()
        try await writer.append(ByteBuffer(bytes: streamed))
        _ = try await writer.finish()
        var naming = try prepared(#"{"resourceType":"Binary","contentType":"application/dicom"}"#, "Binary", "b2")
        naming.namesStream = writer.id
        _ = try await sqlite.commit(WriteUnit(writes: [naming]))
        let unnamed = try await sqlite.documentStreams.create()
        try await unnamed.append(ByteBuffer(repeating: 9, count: 1000))
        _ = try await unnamed.finish()

        let copied = try await EmbeddedExport.run(from: sqlite, sourceName: source.location, to: postgres) { _, _ in }
        XCTAssertEqual(copied, 2503)
        let copiedStream = try await postgres.documentStreams.read(writer.id, offset: 0, count: streamed.count + 10)
        XCTAssertEqual(Array(copiedStream.readableBytesView), streamed)
        let pendingThere = try await postgres.documentStreams.pending(idleFor: 0)
        XCTAssertEqual(pendingThere.map(\.id), [unnamed.id], "named streams are not pending after the export")
        let sourceCounts = try await sqlite.resourceCounts()
        let targetCounts = try await postgres.resourceCounts()
        XCTAssertEqual(sourceCounts, targetCounts)
        for key in [ResourceKey("Patient", "p0"), ResourceKey("Patient", "p1"), ResourceKey("Patient", "p2499"), ResourceKey("Observation", "o1"),
                    ResourceKey("Binary", "b1")] {
            let a = try await sqlite.read(key), b = try await postgres.read(key)
            XCTAssertEqual(a?.version, b?.version, "\(key)")
            XCTAssertEqual(a?.content, b?.content, "\(key): the exact stored bytes")
            XCTAssertEqual(a?.lastUpdated, b?.lastUpdated, "\(key)")
        }
        let deleted = try await postgres.read(ResourceKey("Patient", "p2"))
        XCTAssertEqual(deleted?.deleted, true)
        let history = try await postgres.history(HistoryQuery(type: "Patient", id: "p1"))
        XCTAssertEqual(history.records.map(\.version), [3, 2, 1])
        // Index rows came along: searches answer the same.
        let byIdentifier = SearchQuery(type: "Patient", clauses: [.init(parameter: "identifier", values: [.token(system: "urn:oid:2.16.156.10011.1.3", code: "id1234")])])
        let found = try await postgres.search(byIdentifier, limit: 5)
        XCTAssertEqual(found, [ResourceKey("Patient", "p1234")])
        let byValue = SearchQuery(type: "Observation", clauses: [.init(parameter: "value-quantity", parameterType: "quantity",
            values: [.quantity(.gt, value: 5, low: 5, high: 5, system: nil, code: nil)])])
        let obs = try await postgres.search(byValue, limit: 5)
        XCTAssertEqual(obs, [ResourceKey("Observation", "o1")])
        // Running it again copies nothing more; a different source is refused.
        let again = try await EmbeddedExport.run(from: sqlite, sourceName: source.location, to: postgres) { _, _ in }
        XCTAssertEqual(again, 0)
        do {
            _ = try await EmbeddedExport.run(from: sqlite, sourceName: "/elsewhere", to: postgres) { _, _ in }
            XCTFail("an export into a database holding other data must be refused")
        } catch is EmbeddedExport.Refused {}
        // New writes on PostgreSQL continue the version numbers and never reuse a row id.
        let next = try await postgres.commit(WriteUnit(writes: [try prepared(#"{"resourceType":"Patient","gender":"male"}"#, "Patient", "p1")]))
        XCTAssertEqual(next[0].version, 4)
        let created = try await postgres.commit(WriteUnit(writes: [try prepared(#"{"resourceType":"Patient","gender":"male"}"#, "Patient", "new", method: "POST")]))
        XCTAssertEqual(created[0].version, 1)
        let all = try await postgres.resourceCounts()
        XCTAssertEqual(all["Patient"], 2500)
    }
}
