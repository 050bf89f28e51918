import Crypto
import FHIRModel
import Foundation
import Platform
@_spi(WritePipeline) import Store
import StoreTestSupport
import XCTest

/// The audit hash chain on every backend: appended with units (alone or with writes), in one
/// unbroken order under concurrency, continued after reopening, and verified by recomputation.
final class AuditChainTests: XCTestCase {
    func event(_ n: Int, patients: [String] = []) -> AuditRecord {
        AuditRecord(recorded: Int64(1_700_000_000_000_000 + n), content: Array(#"{"resourceType":"AuditEvent","n":\#(n)}"#.utf8),
                    patients: patients)
    }

    func auditOnly(_ records: AuditRecord...) -> WriteUnit {
        var unit = WriteUnit(writes: [])
        unit.audit = records
        return unit
    }

    /// The link is SHA-256 over `previous hash + "\n" + seq + "\n" + event bytes` (ADR 010), so an
    /// exported archive can be checked with any SHA-256 tool; computed here independently.
    func test_link_isSHA256OverPreviousHashPlaceAndBytes() {
        let content = Array(#"{"t":1,"s":"张三"}"#.utf8)
        for (previous, seq) in [(AuditChain.genesis, 1), (String(repeating: "ab", count: 32), 1_234_567_890_123)] {
            let digest = SHA256.hash(data: Array("\(previous)\n\(seq)\n".utf8) + content)
            let expected = digest.map { String(format: "%02x", $0) }.joined()
            XCTAssertEqual(AuditChain.link(previous: previous, seq: seq, content: content), expected)
        }
    }

    func test_freshStore_verifies_andEventsChainInOrderAcrossReopen() async throws {
        try await withEachBackend { test in
            let empty = try await test.store.verifyAuditChain(progress: { _ in })
            XCTAssertEqual(empty.checked, 0)
            XCTAssertNil(empty.broken)
            XCTAssertNil(empty.head)
            _ = try await test.store.commit(auditOnly(event(1, patients: ["Patient/a"]), event(2, patients: ["Patient/b"])))
            var withWrite = WriteUnit(writes: [try IngestPipeline().prepare(try JSONParser.parse(#"{"resourceType":"Patient"}"#),
                                                                             type: "Patient", id: "a", method: "PUT")])
            withWrite.audit = [event(3, patients: ["Patient/a"])]
            _ = try await test.store.commit(withWrite)
            try await test.store.close()
            let store = try await test.reopen()
            _ = try await store.commit(auditOnly(event(4, patients: ["Patient/a", "Patient/b"])))
            let report = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(report.broken)
            XCTAssertEqual(report.checked, 4)
            // Newest first (chain order, which is commit order: a read's event may reach the chain a
            // few milliseconds after a write's), only events about Patient/a.
            let aboutA = try await store.auditEvents(patients: ["Patient/a"], before: nil, limit: 10)
            XCTAssertEqual(aboutA.map(\.seq), aboutA.map(\.seq).sorted(by: >))
            XCTAssertEqual(Set(aboutA.map(\.content)), Set([event(1), event(3), event(4)].map(\.content)))
            let older = try await store.auditEvents(patients: ["Patient/a"], before: aboutA[0].seq, limit: 1)
            XCTAssertEqual(older.map(\.seq), [aboutA[1].seq])
            let one = try await store.auditEvent(seq: aboutA[1].seq)
            XCTAssertEqual(one?.content, aboutA[1].content)
            XCTAssertEqual(report.head, aboutA.first?.hash)
            try await store.close()
        }
    }

    func test_concurrentAppends_formOneUnbrokenChain() async throws {
        try await withEachBackend { test in
            let store = test.store
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<200 {
                    var unit = WriteUnit(writes: [])
                    unit.audit = [AuditRecord(recorded: Int64(i), content: Array(#"{"resourceType":"AuditEvent","n":\#(i)}"#.utf8), patients: [])]
                    let one = unit
                    group.addTask { _ = try await store.commit(one) }
                }
                try await group.waitForAll()
            }
            let report = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(report.broken)
            XCTAssertEqual(report.checked, 200)
        }
    }

    func test_aFailedUnit_appendsNoEvent() async throws {
        try await withEachBackend { test in
            let pipeline = IngestPipeline()
            _ = try await test.store.commit(WriteUnit(writes: [try pipeline.prepare(try JSONParser.parse(#"{"resourceType":"Patient"}"#),
                                                                                     type: "Patient", id: "p", method: "PUT")]))
            var stale = WriteUnit(writes: [try pipeline.prepare(try JSONParser.parse(#"{"resourceType":"Patient","id":"p"}"#),
                                                                type: "Patient", id: "p", method: "PUT", ifMatch: 7)])
            stale.audit = [event(1)]
            do {
                _ = try await test.store.commit(stale)
                XCTFail("a stale If-Match committed")
            } catch StoreError.versionConflict {}
            let report = try await test.store.verifyAuditChain(progress: { _ in })
            XCTAssertEqual(report.checked, 0)
        }
    }

    func test_archive_exportsThenPrunes_andTheChainStaysVerifiableAcrossArchives() async throws {
        try await withEachBackend { test in
            let store = test.store
            for n in 1...10 { _ = try await store.commit(auditOnly(event(n, patients: ["Patient/a"]))) }
            let folder = NSTemporaryDirectory() + "audit-archive-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let t0: Int64 = 1_700_000_000_000_000
            let first = try await AuditArchive.archive(store, before: t0 + 6, folder: folder)
            XCTAssertEqual(first.first, 1)
            XCTAssertEqual(first.last, 5)
            let remaining = try await store.auditEvents(patients: ["Patient/a"], before: nil, limit: 100)
            XCTAssertEqual(remaining.map(\.seq), [10, 9, 8, 7, 6], "archived events leave the store, with their patient rows")
            let report = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(report.broken)
            XCTAssertEqual(report.checked, 5)
            XCTAssertEqual(report.archivedThrough, 5)
            let anchor5 = try await store.auditAnchor()
            XCTAssertEqual(try AuditArchive.verify(folder: folder, anchor: anchor5), 5)
            // Nothing new to archive; later events keep chaining on; a second archive continues the first.
            let none = try await AuditArchive.archive(store, before: t0 + 3, folder: folder)
            XCTAssertNil(none.file)
            _ = try await store.commit(auditOnly(event(11)))
            let second = try await AuditArchive.archive(store, before: t0 + 9, folder: folder)
            XCTAssertEqual([second.first, second.last], [6, 8])
            let anchor8 = try await store.auditAnchor()
            XCTAssertEqual(try AuditArchive.verify(folder: folder, anchor: anchor8), 8)
            let after = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(after.broken)
            XCTAssertEqual(after.checked, 3)
            // A prune whose hash no longer matches the event removes nothing.
            do {
                try await store.pruneAudit(through: 9, hash: String(repeating: "f", count: 64), archive: "x")
                XCTFail("pruned with a wrong hash")
            } catch {}
            let still = try await store.auditEvents(after: 8, limit: 10)
            XCTAssertEqual(still.map(\.seq), [9, 10, 11])

            // An archive file edited or removed afterwards is named.
            let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            XCTAssertEqual(files, ["audit-000000000001-000000000005.ndjson", "audit-000000000006-000000000008.ndjson"])
            let path = folder + "/" + files[0]
            let original = try String(contentsOfFile: path, encoding: .utf8)
            let edited = original.replacingOccurrences(of: Data(event(3).content).base64EncodedString(),
                                                       with: Data(#"{"resourceType":"AuditEvent","n":33}"#.utf8).base64EncodedString())
            XCTAssertNotEqual(edited, original)
            try edited.write(toFile: path, atomically: true, encoding: .utf8)
            let anchor = try await store.auditAnchor()
            XCTAssertThrowsError(try AuditArchive.verify(folder: folder, anchor: anchor)) { error in
                XCTAssertTrue("\(error)".contains("AuditEvent/3 was changed"), "\(error)")
            }
            try FileManager.default.removeItem(atPath: path)
            XCTAssertThrowsError(try AuditArchive.verify(folder: folder, anchor: anchor)) { error in
                XCTAssertTrue("\(error)".contains("does not continue"), "\(error)")
            }
        }
    }
}
