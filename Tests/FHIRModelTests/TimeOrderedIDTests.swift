import Foundation
import FHIRModel
import XCTest

/// Server-assigned ids (new resources, master Persons) are time-ordered (UUID version 7 layout),
/// so that they sort by creation.
final class TimeOrderedIDTests: XCTestCase {
    func test_ids_areVersion7UUIDs_sortingByCreationTime() {
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let ids = (0..<50).map { TimeOrderedID.make(now: start.addingTimeInterval(Double($0) * 0.002)) }
        for id in ids {
            XCTAssertNotNil(UUID(uuidString: id), id)
            XCTAssertEqual(id, id.lowercased())
            XCTAssertEqual(Array(id)[14], "7", "version nibble of \(id)")
            XCTAssertTrue("89ab".contains(Array(id)[19]), "variant of \(id)")
        }
        XCTAssertEqual(ids, ids.sorted())
        XCTAssertEqual(Set(ids).count, ids.count)
        // The first 48 bits are the milliseconds since the epoch.
        XCTAssertEqual(UInt64(ids[0].replacingOccurrences(of: "-", with: "").prefix(12), radix: 16), 1_790_000_000_000)
    }
}
