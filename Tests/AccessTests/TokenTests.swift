@testable import Access
import Crypto
import Foundation
import JWTKit
import XCTest

final class TokenTests: XCTestCase {
    func authority(audience: String = "huitong-fhir", issuer: String = "huitong") async throws -> TokenAuthority {
        let (kid, pem) = try SigningKey.generate()
        return try await TokenAuthority(keys: [try SigningKey(kid: kid, pem: pem)], issuer: issuer, audience: audience)
    }

    let clinic = Principal(kind: .client, subject: "his-1", role: .facilitySystem, facility: "org-1",
                           scopes: SMARTScope.parseList("system/Observation.cruds system/Patient.rs"))

    func test_issuedToken_verifiesBackToThePrincipal() async throws {
        let tokens = try await authority()
        let (token, expiresIn) = try await tokens.issue(for: clinic)
        XCTAssertEqual(expiresIn, 300)
        var verified = try await tokens.verify(token)
        XCTAssertNotNil(verified.tokenID)
        verified.tokenID = nil
        XCTAssertEqual(verified, clinic)
    }

    func test_aVerifiedToken_isRememberedOnlyUntilItExpires() async throws {
        let tokens = try await authority()
        let now = Date()
        let (token, lifetime) = try await tokens.issue(for: clinic, now: now)
        _ = try await tokens.verify(token, now: now)
        _ = try await tokens.verify(token, now: now.addingTimeInterval(TimeInterval(lifetime - 1)))
        do {
            _ = try await tokens.verify(token, now: now.addingTimeInterval(TimeInterval(lifetime + 1)))
            XCTFail("an expired token was accepted from the cache")
        } catch {
            XCTAssertTrue(error.reason.contains("expired"))
        }
    }

    func test_rotatedKeys_oldTokensStillVerify_newestKeySigns() async throws {
        let old = try SigningKey.generate(now: Date(timeIntervalSince1970: 1_700_000_000))
        let new = try SigningKey.generate(now: Date(timeIntervalSince1970: 1_800_000_000))
        let before = try await TokenAuthority(keys: [try SigningKey(kid: old.kid, pem: old.pem)])
        let after = try await TokenAuthority(keys: [try SigningKey(kid: new.kid, pem: new.pem), try SigningKey(kid: old.kid, pem: old.pem)])
        XCTAssertEqual(after.signingKid, new.kid)
        let (token, _) = try await before.issue(for: clinic)
        _ = try await after.verify(token)
        XCTAssertTrue(after.publicJWKS.contains(old.kid) && after.publicJWKS.contains(new.kid))
        XCTAssertFalse(after.publicJWKS.contains("\"d\""), "the JWKS must hold public keys only")
    }

    func assertRefused(_ tokens: TokenAuthority, _ token: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            _ = try await tokens.verify(token)
            XCTFail("accepted: \(expected)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.error, "invalid_token", file: file, line: line)
            XCTAssertTrue(error.reason.contains(expected), "\(error.reason)", file: file, line: line)
            XCTAssertTrue(error.challenge.hasPrefix("Bearer realm=\"huitong\", error=\"invalid_token\""), file: file, line: line)
        }
    }

    func test_badTokens_areRefusedWithAReason() async throws {
        let tokens = try await authority()
        let (good, _) = try await tokens.issue(for: clinic)
        let parts = good.split(separator: ".").map(String.init)
        // Expired.
        let (expired, _) = try await tokens.issue(for: clinic, now: Date().addingTimeInterval(-600))
        await assertRefused(tokens, expired, "expired")
        // Signed by another server's key.
        let (foreign, _) = try await authority().issue(for: clinic)
        await assertRefused(tokens, foreign, "signature")
        // Same key, other audience or issuer.
        let (kid, pem) = try SigningKey.generate()
        let shared = try SigningKey(kid: kid, pem: pem)
        let here = try await TokenAuthority(keys: [shared])
        let (otherAudience, _) = try await TokenAuthority(keys: [shared], audience: "another-service").issue(for: clinic)
        await assertRefused(here, otherAudience, "another audience")
        let (otherIssuer, _) = try await TokenAuthority(keys: [shared], issuer: "elsewhere").issue(for: clinic)
        await assertRefused(here, otherIssuer, "another server")
        // alg none, with and without the original signature.
        let none = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        await assertRefused(tokens, "\(none).\(parts[1]).", "'none' is not accepted")
        await assertRefused(tokens, "\(none).\(parts[1]).\(parts[2])", "'none' is not accepted")
        // A payload changed after signing (scope widened).
        var claims = try JSONSerialization.jsonObject(with: Base64URL.decode(parts[1])!) as! [String: Any]
        claims["scope"] = "system/*.cruds"
        let forged = try JSONSerialization.data(withJSONObject: claims).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        await assertRefused(tokens, "\(parts[0]).\(forged).\(parts[2])", "signature")
        for garbage in ["", "abc", "a.b", "a.b.c.d", "...", "\u{0}.\u{0}.\u{0}", String(repeating: "A", count: 10_000)] {
            await assertRefused(tokens, garbage, "not a JWT")
        }
    }
}
