import Platform
@_spi(WritePipeline) import Store
import StoreTestSupport
import XCTest

/// Platform records (clients, users, one-time ids) on every backend: written with a unit, read
/// back after reopening, one-time inserts refused while the first is unexpired.
final class PlatformRecordTests: XCTestCase {
    func unit(_ writes: RecordWrite...) -> WriteUnit {
        var unit = WriteUnit(writes: [])
        unit.records = writes
        return unit
    }

    func test_putReplaces_deleteRemoves_andRecordsSurviveReopen() async throws {
        try await withEachBackend { test in
            _ = try await test.store.commit(unit(RecordWrite(PlatformRecord(kind: "oauth-client", id: "b", content: "{\"v\":1}")),
                                                 RecordWrite(PlatformRecord(kind: "oauth-client", id: "a", content: "{\"v\":1}"))))
            _ = try await test.store.commit(unit(RecordWrite(PlatformRecord(kind: "oauth-client", id: "b", content: "{\"v\":2}"))))
            try await test.store.close()
            let store = try await test.reopen()
            let found1 = try await store.record(kind: "oauth-client", id: "b", now: 0)
            XCTAssertEqual(found1?.content, "{\"v\":2}")
            let found2 = try await store.records(kind: "oauth-client", now: 0)
            XCTAssertEqual(found2.map(\.id), ["a", "b"])
            let found3 = try await store.record(kind: "other-kind", id: "b", now: 0)
            XCTAssertNil(found3)
            // A NUL is part of the id, not its end (a client id "b\0" is not client "b").
            let withNUL = try await store.record(kind: "oauth-client", id: "b\u{0}", now: 0)
            XCTAssertNil(withNUL)
            let readNUL = try await store.read(ResourceKey("Patient", "b\u{0}"))
            XCTAssertNil(readNUL)
            _ = try await store.commit(unit(.delete(kind: "oauth-client", id: "a")))
            let found4 = try await store.records(kind: "oauth-client", now: 0)
            XCTAssertEqual(found4.map(\.id), ["b"])
            try await store.close()
        }
    }

    func test_insertNew_refusesAnUnexpiredDuplicate_andLeavesTheUnitUnwritten() async throws {
        try await withEachBackend { test in
            let store = test.store
            let once = PlatformRecord(kind: "assertion-jti", id: "client j1", content: "{}", expires: 1_000)
            _ = try await store.commit(unit(RecordWrite(once, mode: .insertNew(now: 500))))
            // The same id again before it expires: refused, and the unit's other record is not written.
            do {
                _ = try await store.commit(unit(RecordWrite(PlatformRecord(kind: "note", id: "n", content: "{}")),
                                                RecordWrite(once, mode: .insertNew(now: 900))))
                XCTFail("a duplicate one-time record was accepted")
            } catch StoreError.recordExists(let kind, let id) {
                XCTAssertEqual(kind, "assertion-jti")
                XCTAssertEqual(id, "client j1")
            }
            let found5 = try await store.record(kind: "note", id: "n", now: 0)
            XCTAssertNil(found5)
            // Expired records read as absent and may be inserted again.
            let found6 = try await store.record(kind: "assertion-jti", id: "client j1", now: 1_001)
            XCTAssertNil(found6)
            let found7 = try await store.record(kind: "assertion-jti", id: "client j1", now: 999)
            XCTAssertNotNil(found7)
            let later = PlatformRecord(kind: "assertion-jti", id: "client j1", content: "{}", expires: 5_000)
            _ = try await store.commit(unit(RecordWrite(later, mode: .insertNew(now: 1_001))))
            let found8 = try await store.record(kind: "assertion-jti", id: "client j1", now: 2_000)
            XCTAssertEqual(found8?.expires, 5_000)
        }
    }

    /// The sweep deletes expired records of every kind, and only those.
    func test_sweepRemovesExpiredRecords_only() async throws {
        try await withEachBackend { test in
            let store = test.store
            _ = try await store.commit(unit(RecordWrite(PlatformRecord(kind: "hl7-rejected", id: "old", content: "{}", expires: 1_000)),
                                            RecordWrite(PlatformRecord(kind: "hl7-rejected", id: "new", content: "{}", expires: 9_000)),
                                            RecordWrite(PlatformRecord(kind: "assertion-jti", id: "used", content: "{}", expires: 4_999)),
                                            RecordWrite(PlatformRecord(kind: "oauth-client", id: "c", content: "{}"))))
            // Read as of time 0 every record is still there: the rows themselves are what goes.
            let before = try await store.records(kind: "hl7-rejected", now: 0)
            XCTAssertEqual(before.map(\.id).sorted(), ["new", "old"])
            try await ExpiredRecordSweep(store: store).sweep(now: 5_000)
            let rejected = try await store.records(kind: "hl7-rejected", now: 0)
            XCTAssertEqual(rejected.map(\.id), ["new"])
            let jti = try await store.records(kind: "assertion-jti", now: 0)
            XCTAssertEqual(jti.map(\.id), [])
            let clients = try await store.records(kind: "oauth-client", now: 0)
            XCTAssertEqual(clients.map(\.id), ["c"], "records without an expiry stay")
            try await store.close()
        }
    }
}
