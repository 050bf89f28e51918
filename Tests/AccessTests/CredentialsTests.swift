@testable import Access
import Foundation
import XCTest

final class CredentialsTests: XCTestCase {
    func test_totp_matchesTheRFC6238Vectors_andAcceptsACodeOnce() {
        let secret = Array("12345678901234567890".utf8)  // RFC 6238 appendix B, SHA-1
        XCTAssertEqual(TOTP.code(secret: secret, counter: 59 / 30, digits: 8), "94287082")
        XCTAssertEqual(TOTP.code(secret: secret, counter: 1_111_111_109 / 30, digits: 8), "07081804")
        XCTAssertEqual(TOTP.code(secret: secret, counter: 1_234_567_890 / 30, digits: 8), "89005924")
        XCTAssertEqual(TOTP.code(secret: secret, counter: 20_000_000_000 / 30, digits: 8), "65353130")
        let now = Date(timeIntervalSince1970: 1_234_567_890)
        let code = TOTP.code(secret: secret, counter: 1_234_567_890 / 30)
        let step = TOTP.verify(code, secret: secret, now: now, after: nil)
        XCTAssertEqual(step, 1_234_567_890 / 30)
        XCTAssertNil(TOTP.verify(code, secret: secret, now: now, after: step), "a code is good once")
        XCTAssertNil(TOTP.verify(code, secret: secret, now: now.addingTimeInterval(120), after: nil), "too late")
        XCTAssertNotNil(TOTP.verify(code, secret: secret, now: now.addingTimeInterval(30), after: nil), "one step of clock drift")
    }

    func test_base32_roundTrips_andMatchesRFC4648() {
        XCTAssertEqual(Base32.encode(Array("foobar".utf8)), "MZXW6YTBOI")
        XCTAssertEqual(Base32.decode("MZXW6YTBOI"), Array("foobar".utf8))
        let secret = TOTP.newSecret()
        XCTAssertEqual(Base32.decode(Base32.encode(secret)), secret)
        XCTAssertNil(Base32.decode("not base32!"))
    }

    func test_passwordHash_isSaltedPBKDF2_andVerifiesOnlyTheRightPassword() throws {
        let a = try PasswordHash.make("正确的马电池订书钉", rounds: 1_000)
        let b = try PasswordHash.make("正确的马电池订书钉", rounds: 1_000)
        XCTAssertNotEqual(a, b, "salted")
        XCTAssertTrue(a.hasPrefix("pbkdf2-sha256$1000$"))
        XCTAssertTrue(PasswordHash.verify("正确的马电池订书钉", a))
        XCTAssertFalse(PasswordHash.verify("正确的马电池订书钉 ", a))
        XCTAssertFalse(PasswordHash.verify("x", "pbkdf2-sha256$1000$bad"))
    }
}
