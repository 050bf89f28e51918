import Foundation
import GMCrypto
import HealthCard
import XCTest

/// SM3 and SM4 against the standards' vectors, RFC 8998's SM4-GCM vector, and OpenSSL (Debian's
/// OpenSSL 3 implements both) on random inputs; the e-health card scheme's worked example.
final class GMCryptoTests: XCTestCase {
    func hex(_ s: String) -> [UInt8] { [UInt8](hex: s.replacingOccurrences(of: " ", with: ""))! }

    func test_SM3_standardVectors() {
        XCTAssertEqual(SM3.hash(Array("abc".utf8)).hexUppercase,
                       "66C7F0F462EEEDD9D1F2D46BDC10E4E24167C4875CF2F7A2297DA02B8F4BA8E0")
        XCTAssertEqual(SM3.hash(Array(String(repeating: "abcd", count: 16).utf8)).hexUppercase,
                       "DEBE9FF92275B8A138604889C18E5A4D6FDB70E5387E5765293DCBA39C0C5732")
        // Fed in pieces of every size, the same digest.
        let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        for piece in [1, 3, 63, 64, 65, 200] {
            var h = SM3()
            var i = 0
            while i < message.count { h.update(Array(message[i..<min(i + piece, message.count)])); i += piece }
            XCTAssertEqual(h.finalize(), SM3.hash(message), "pieces of \(piece)")
        }
    }

    func test_SM4_standardVectors() throws {
        let key = hex("0123456789ABCDEFFEDCBA9876543210")
        let sm4 = try SM4(key: key)
        XCTAssertEqual(sm4.encryptBlock(key).hexUppercase, "681EDF34D206965E86B3E94F536E4246")
        XCTAssertEqual(sm4.decryptBlock(hex("681EDF34D206965E86B3E94F536E4246")), key)
        var block = key
        for _ in 0..<1_000_000 { block = sm4.encryptBlock(block) }
        XCTAssertEqual(block.hexUppercase, "595298C7C6FD271F0402F804C33D3F66", "the 1,000,000-iteration vector")
        XCTAssertThrowsError(try SM4(key: Array(key.prefix(15))))
    }

    func test_SM4GCM_RFC8998() throws {
        let sm4 = try SM4(key: hex("0123456789ABCDEFFEDCBA9876543210"))
        let nonce = hex("00001234567800000000ABCD"), aad = hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
        let plaintext = hex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFF EEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
        let (ciphertext, tag) = try sm4.sealGCM(plaintext, nonce: nonce, associatedData: aad)
        XCTAssertEqual(ciphertext.hexUppercase, "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
                       + "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D")
        XCTAssertEqual(tag.hexUppercase, "83DE3541E4C2B58177E065A9BF7B62EC")
        XCTAssertEqual(try sm4.openGCM(ciphertext, tag: tag, nonce: nonce, associatedData: aad), plaintext)
        var tampered = ciphertext
        tampered[5] ^= 1
        XCTAssertThrowsError(try sm4.openGCM(tampered, tag: tag, nonce: nonce, associatedData: aad))
        XCTAssertThrowsError(try sm4.openGCM(ciphertext, tag: tag, nonce: nonce, associatedData: []))
        // Lengths that are not whole blocks round-trip.
        for n in [0, 1, 15, 17, 33] {
            let data = (0..<n).map { UInt8($0) }
            let sealed = try sm4.sealGCM(data, nonce: nonce)
            XCTAssertEqual(try sm4.openGCM(sealed.ciphertext, tag: sealed.tag, nonce: nonce), data)
        }
    }

    func test_cardIdentifiers_theSchemeExample() throws {
        let ids = try CardIdentifiers(documentType: "01", documentNumber: "11010020171225006X",
                                      rootKey: hex("0123456789ABCDEFFEDCBA9876543210"))
        XCTAssertEqual(ids.masterIndexID, "ABD17E7ED399EF68AB5660155D6E226D2C92EAC3254A4A66BED83AED0ADA1E9E")
        XCTAssertEqual(ids.diversificationFactor.hexUppercase, "92CDCE45A16799FD")
        XCTAssertEqual(ids.userKey.hexUppercase, "86C63180C2806ED1F47B859DE501215B")
        XCTAssertEqual(ids.cardID, "98FF9F2C05145CB9305E9D8A57E072BB51180CA49E5BE5E9D41BCE3A9A571928")
        XCTAssertThrowsError(try CardIdentifiers(documentType: "01", documentNumber: "x", rootKey: [1, 2, 3]))
    }

    // MARK: against OpenSSL

    static let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }

    func run(_ arguments: [String], input: [UInt8]? = nil) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.openssl!)
        p.arguments = arguments
        let out = Pipe(), inPipe = Pipe()
        p.standardOutput = out
        p.standardInput = inPipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input)) }
        try inPipe.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return [UInt8](data)
    }

    func test_SM3_andHMAC_matchOpenSSL_on1000RandomMessages() throws {
        guard Self.openssl != nil else { throw XCTSkip("openssl is not installed") }
        var rng = SystemRandomNumberGenerator()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sm3-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var expected: [String: String] = [:]
        var paths: [String] = []
        for i in 0..<1000 {
            let message = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let path = dir.appendingPathComponent("m\(i)").path
            FileManager.default.createFile(atPath: path, contents: Data(message))
            paths.append(path)
            expected[path] = SM3.hash(message).hexUppercase
        }
        // One openssl run for all files: `SM3(<path>)= <hex>` per line.
        let output = String(decoding: try run(["dgst", "-sm3"] + paths), as: UTF8.self)
        var compared = 0
        for line in output.split(separator: "\n") {
            guard let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")") else { continue }
            let path = String(line[line.index(after: open)..<close])
            let digest = line.split(separator: " ").last.map { String($0).uppercased() }
            XCTAssertEqual(digest, expected[path], path)
            compared += 1
        }
        XCTAssertEqual(compared, 1000)
        for _ in 0..<20 {
            let key = (0..<Int.random(in: 1...100, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let message = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let out = String(decoding: try run(["dgst", "-sm3", "-mac", "HMAC", "-macopt", "hexkey:" + key.hexUppercase], input: message), as: UTF8.self)
            XCTAssertEqual(out.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines).uppercased() },
                           HMACSM3.authenticationCode(for: message, key: key).hexUppercase)
        }
    }

    func test_SM4_ECB_CBC_matchOpenSSL_onRandomKeysAndData() throws {
        guard Self.openssl != nil else { throw XCTSkip("openssl is not installed") }
        var rng = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let key = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let iv = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let data = (0..<(16 * Int.random(in: 1...64, using: &rng))).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let sm4 = try SM4(key: key)
            let ecb = try run(["enc", "-sm4-ecb", "-K", key.hexUppercase, "-nopad"], input: data)
            XCTAssertEqual(try sm4.encryptECB(data), ecb, "ECB round \(round)")
            XCTAssertEqual(try sm4.decryptECB(ecb), data)
            // CBC with openssl's default PKCS #7 padding.
            let cbc = try run(["enc", "-sm4-cbc", "-K", key.hexUppercase, "-iv", iv.hexUppercase], input: data)
            XCTAssertEqual(try sm4.encryptCBC(SM4.pad(data), iv: iv), cbc, "CBC round \(round)")
            XCTAssertEqual(try SM4.unpad(try sm4.decryptCBC(cbc, iv: iv)), data)
        }
    }
}
