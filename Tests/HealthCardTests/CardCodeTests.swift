import GMCrypto
@testable import HealthCard
import XCTest

final class CardCodeTests: XCTestCase {
    let ids = try! CardIdentifiers(documentType: "01", documentNumber: "11010020171225006X", rootKey: [UInt8](hex: "0123456789ABCDEFFEDCBA9876543210")!)

    func test_staticAndDynamicTexts_roundTrip() throws {
        let fixed = CardCode.staticCode(cardID: ids.cardID)
        XCTAssertEqual(fixed.text, ids.cardID + ":1")
        XCTAssertEqual(try CardCode(text: fixed.text), fixed)
        let expires = 1_795_000_000
        let dynamic = try CardCode.dynamic(cardID: ids.cardID, userKey: ids.userKey, expires: expires)
        XCTAssertTrue(dynamic.text.hasPrefix(ids.cardID + ":0:"))
        XCTAssertEqual(dynamic.text.count, 64 + 3 + 32)
        let parsed = try CardCode(text: dynamic.text)
        XCTAssertEqual(parsed.expires(userKey: ids.userKey), expires)
        XCTAssertEqual(CardCode.chinaTime(1_772_296_205), "20260301003005")
        XCTAssertEqual(CardCode.seconds("20260301003005"), 1_772_296_205)
        XCTAssertNil(CardCode.seconds("20260230120000"), "no 30 February")
    }

    func test_tamperedOrForeignTokens_haveNoValidity() throws {
        let dynamic = try CardCode.dynamic(cardID: ids.cardID, userKey: ids.userKey, expires: 1_795_000_000)
        guard case .dynamicCode(let id, let validity) = dynamic else { return XCTFail() }
        var chars = Array(validity)
        for position in [0, 7, 15, 31] {
            var changed = chars
            changed[position] = changed[position] == "A" ? "B" : "A"
            XCTAssertNil(CardCode.dynamicCode(cardID: id, validity: String(changed)).expires(userKey: ids.userKey), "changed at \(position)")
        }
        chars.reverse()
        XCTAssertNil(CardCode.dynamicCode(cardID: id, validity: String(chars)).expires(userKey: ids.userKey))
        let other = try CardIdentifiers(documentType: "01", documentNumber: "110101199003071234", rootKey: [UInt8](repeating: 1, count: 16))
        XCTAssertNil(dynamic.expires(userKey: other.userKey), "another card's key")
        for bad in ["", ids.cardID, ids.cardID + ":2", ids.cardID + ":0", ids.cardID + ":0:XYZ", "abc:1", ids.cardID.lowercased() + ":1"] {
            XCTAssertThrowsError(try CardCode(text: bad), bad)
        }
    }
}
