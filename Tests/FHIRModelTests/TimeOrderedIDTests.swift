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

/// Placeholder ids (`urn:uuid:` full URLs, HL7 control ids) are random version 4 UUIDs.
final class RandomUUIDTests: XCTestCase {
    func test_randomUUIDs_areVersion4_inLowerCase_andDiffer() {
        let ids = (0..<200).map { _ in RandomUUID.make() }
        for id in ids {
            XCTAssertEqual(UUID(uuidString: id)?.uuidString.lowercased(), id)
            XCTAssertEqual(Array(id)[14], "4", "version nibble of \(id)")
            XCTAssertTrue("89ab".contains(Array(id)[19]), "variant of \(id)")
        }
        XCTAssertEqual(Set(ids).count, ids.count)
        // Every hexadecimal digit position outside the fixed nibbles varies.
        let hex = ids.map { Array($0.replacingOccurrences(of: "-", with: "")) }
        for position in 0..<32 where position != 12 && position != 16 {
            XCTAssertGreaterThan(Set(hex.map { $0[position] }).count, 4, "position \(position)")
        }
    }
}
