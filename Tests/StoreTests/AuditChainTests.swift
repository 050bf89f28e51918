import FHIRModel
import Foundation
import Platform
import Store
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
}
