@testable import Access
import Crypto
import FHIRModel
import Foundation
import NIOCore
import Store
import StoreTestSupport
import XCTest

/// The keyring and the stored form of protected numbers, without HTTP.
final class IdentifierProtectionUnitTests: XCTestCase {
    let first = IdentifierProtection.newKeyLine(id: "k1")
    let second = IdentifierProtection.newKeyLine(id: "k2")

    func patient(_ id: String = "11010519491231002X", phone: String = "13800138000") -> JSONObject {
        guard case .object(let o)? = try? JSONParser.parse(
            #"{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"\#(id)","_value":{"extension":[{"url":"http://example.org/note","valueString":"checked"}]}}],"telecom":[{"system":"phone","value":"\#(phone)"}],"contact":[{"extension":[{"url":"https://huitong.health/fhir/StructureDefinition/contact-identifier","valueIdentifier":{"system":"urn:oid:2.16.156.10011.1.3","value":"110101196001010014"}}]}]}"#)
        else { fatalError() }
        return o
    }

    func test_protectThenReveal_givesTheResourceBack_andRotationKeepsOldDataReadable() throws {
        let old = try IdentifierProtection(keyring: first)
        let (stored, secrets) = old.protect(patient(), type: "Patient")
        XCTAssertEqual(secrets, ["11010519491231002X", "13800138000", "110101196001010014"])
        let text = String(decoding: JSONWriter.bytes(.object(stored)), as: UTF8.self)
        for secret in secrets { XCTAssertFalse(text.contains(secret)) }
        XCTAssertTrue(text.contains("http://example.org/note"), "the value's own extensions are kept")
        XCTAssertEqual(old.reveal(stored), patient())

        // A second key: it encrypts from now on; the first still decrypts; the blind index is unchanged.
        let rotated = try IdentifierProtection(keyring: first + "\n" + second)
        XCTAssertEqual(rotated.reveal(stored), patient())
        XCTAssertEqual(rotated.blind("11010519491231002X"), old.blind("11010519491231002X"))
        XCTAssertEqual(rotated.keyCheck, old.keyCheck)
        let (newer, _) = rotated.protect(patient(), type: "Patient")
        XCTAssertTrue(String(decoding: JSONWriter.bytes(.object(newer)), as: UTF8.self).contains("\"k2:"))
        XCTAssertEqual(old.reveal(newer)["telecom"]?[0]?["value"]?.stringValue, "******", "a keyring without k2 cannot read it")
        // Another keyring entirely: nothing readable, and a different blind index.
        let stranger = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1"))
        XCTAssertEqual(stranger.reveal(stored)["identifier"]?[0]?["value"]?.stringValue, "******")
        XCTAssertNotEqual(stranger.blind("11010519491231002X"), old.blind("11010519491231002X"))
        XCTAssertNotEqual(stranger.keyCheck, old.keyCheck)
    }

    func test_phonesAreProtectedOnlyInResidentsResources_IDNumbersEverywhere() throws {
        let p = try IdentifierProtection(keyring: first)
        guard case .object(let org)? = try? JSONParser.parse(
            #"{"resourceType":"Practitioner","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"11010519491231002X"}],"telecom":[{"system":"phone","value":"010-88886666"}]}"#)
        else { return XCTFail() }
        let (_, secrets) = p.protect(org, type: "Practitioner")
        XCTAssertEqual(secrets, ["11010519491231002X"])
    }

    func test_aCiphertextMovedFromPhoneToIDNumber_doesNotDecrypt() throws {
        let p = try IdentifierProtection(keyring: first)
        let (stored, _) = p.protect(patient(), type: "Patient")
        // Swap the phone's ciphertext into the ID number's place.
        var tampered = stored
        let phoneToken = stored["telecom"]?[0]?["_value"]?["extension"]?[0]?["valueString"]
        var identifier = stored["identifier"]![0]!.objectValue!
        identifier["_value"] = .object(JSONObject([("extension", .array([.object(JSONObject([
            ("url", .string(IdentifierProtection.encryptedValueURL)), ("valueString", phoneToken!)]))]))]))
        tampered["identifier"] = .array([.object(identifier)])
        XCTAssertEqual(p.reveal(tampered)["identifier"]?[0]?["value"]?.stringValue, "******")
    }

    func test_blindCodes_areTheKeyedHMACOfTheValue_base64url() throws {
        let protection = try IdentifierProtection(keyring: first)
        for value in ["110101199003071234", "13800138000", "ny:zhang|1990", "", "张伟|1990-01-01"] {
            let mac = HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: protection.blindKey)
            let expected = Data(Array(mac).prefix(16)).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            XCTAssertEqual(protection.blindKeyed(value), expected, value)
            XCTAssertEqual(protection.blindKeyed(value), expected, "the same code every time")
        }
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + n) }
            let foundation = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            XCTAssertEqual(Base64.urlEncode(bytes), foundation, "\(n) bytes")
        }
    }

    /// The blind code of a protected value is the keyed code of the value without spaces and
    /// hyphens, upper-cased; the same for ASCII numbers and anything else (codes already stored
    /// must keep matching).
    func test_blind_isTheKeyedCodeOfTheNormalisedValue() throws {
        let p = try IdentifierProtection(keyring: first)
        for (value, normalized) in [("1101 0119-900307002x", "11010119900307002X"), ("+86 138-0013-8000", "+8613800138000"),
                                    ("abc-xyz", "ABCXYZ"), ("ａｂ-ß 张", "ＡＢSS张"), ("", "")] {
            XCTAssertEqual(p.blind(value), IdentifierProtection.blindPrefix + p.blindKeyed(normalized), value)
        }
    }

    func test_masking() {
        XCTAssertEqual(IdentifierProtection.masked("11010119900307002X", kind: "id"), "1101**********002X")
        XCTAssertEqual(IdentifierProtection.masked("13800138000", kind: "phone"), "138****8000")
        XCTAssertEqual(IdentifierProtection.masked("12345", kind: "phone"), "****45")
        XCTAssertTrue(IdentifierProtection.mayBeProtected("+86 138-0013-8000"))
        XCTAssertTrue(IdentifierProtection.mayBeProtected("11010119900307002x"))
        XCTAssertFalse(IdentifierProtection.mayBeProtected("final"))
        XCTAssertFalse(IdentifierProtection.mayBeProtected("12345"))
        XCTAssertEqual(try IdentifierProtection(keyring: first).blind("1101 0119-900307002x"),
                       try IdentifierProtection(keyring: first).blind("11010119900307002X"))
    }

    func test_badKeyrings_areRefused() {
        for ring in ["", "# only a comment", "k1 c2hvcnQ=", "k1", "k:1 " + Data(count: 32).base64EncodedString(),
                     first + "\n" + first] {
            XCTAssertThrowsError(try IdentifierProtection(keyring: ring), ring)
        }
    }

    func test_aStoreRefusesAnotherKeyring() async throws {
        try await withEachBackend { test in
            let mine = try IdentifierProtection(keyring: self.first)
            try await mine.bind(to: test.store)
            try await mine.bind(to: test.store)
            try await IdentifierProtection(keyring: self.first + "\n" + self.second).bind(to: test.store)
            let other = try IdentifierProtection(keyring: IdentifierProtection.newKeyLine(id: "k1"))
            do {
                try await other.bind(to: test.store)
                XCTFail("a store written with one keyring must refuse another")
            } catch {
                XCTAssertTrue("\(error)".contains("not the one this store was written with"), "\(error)")
            }
        }
    }
}
