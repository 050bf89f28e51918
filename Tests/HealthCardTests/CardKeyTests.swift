import GMCrypto
@testable import HealthCard
import XCTest

/// The keys of card issuance: the root key never shows in text, a key file is read as the
/// operator writes it, and offline codes verify only under the keys that signed them.
final class CardKeyTests: XCTestCase {
    func test_rootKeyFile_isReadWithComments_andNeverPrinted() throws {
        let key = try CardRootKey(fileText: "# issuer root key\n0123456789ABCDEF\nFEDCBA9876543210\n")
        XCTAssertEqual(key.userKey(diversificationFactor: [UInt8](hex: "92CDCE45A16799FD")!).hexUppercase,
                       "86C63180C2806ED1F47B859DE501215B", "the national scheme's example user key")
        for text in ["\(key)", String(reflecting: key)] {
            XCTAssertFalse(text.uppercased().contains("0123456789ABCDEF"), text)
        }
        XCTAssertThrowsError(try CardRootKey(fileText: "0123")) { XCTAssertEqual($0 as? CardRootKey.KeyError, .length(2)) }
        XCTAssertThrowsError(try CardRootKey(fileText: "not hex at all, not hex at all!!")) { XCTAssertEqual($0 as? CardRootKey.KeyError, .notHex) }
        let fresh = try CardRootKey(fileText: CardRootKey.newFileText())
        XCTAssertEqual(fresh.userKey(diversificationFactor: [1, 2, 3, 4, 5, 6, 7, 8]).count, 16)
    }

    func test_offlineToken_verifiesUnderItsKeys_only_andFitsAVersion10Symbol() throws {
        let old = OfflineCardKeys.newPEM(), new = OfflineCardKeys.newPEM()
        let rotated = try OfflineCardKeys(pems: [old, new])
        let card = String(repeating: "AB", count: 32)
        let token = try rotated.sign(cardID: card, expires: 1_790_000_000)
        XCTAssertTrue(OfflineCardKeys.looksLikeToken(token))
        XCTAssertEqual(try rotated.verify(token).cardID, card)
        XCTAssertEqual(try rotated.verify(token).expires, 1_790_000_000)
        // Signed by the newest key; a verifier that kept only the old key does not know it.
        XCTAssertThrowsError(try OfflineCardKeys(pems: [old]).verify(token)) {
            guard case .unknownKey? = $0 as? OfflineCardKeys.Problem else { return XCTFail("\($0)") }
        }
        var altered = Array(token)
        altered[altered.count - 5] = altered[altered.count - 5] == "A" ? "B" : "A"
        XCTAssertThrowsError(try rotated.verify(String(altered)))
        XCTAssertThrowsError(try rotated.verify("eyJ.x.y")) { XCTAssertEqual($0 as? OfflineCardKeys.Problem, .malformed) }
        let symbol = try QRCode(token, level: .low)
        XCTAssertLessThanOrEqual(symbol.version, 10)
    }
}
