/// SM4 (GB/T 32907-2016), the Chinese commercial-cryptography block cipher: 128-bit blocks and
/// keys, 32 rounds of an unbalanced Feistel network.
///
/// Constant time: the round function and key schedule are; the S-box is a 256-byte table lookup,
/// which is **not** constant time against an attacker sharing the CPU cache (as for table-based
/// AES). The platform uses SM4 for e-health card IDs and QR code validity times, derived from
/// values that are not secret per request; a bit-sliced S-box is future work if SM4 comes to
/// protect long-lived secrets on shared hosts.
public struct SM4: Sendable {
    public static let blockBytes = 16

    static let sbox: [UInt8] = [
        0xD6, 0x90, 0xE9, 0xFE, 0xCC, 0xE1, 0x3D, 0xB7, 0x16, 0xB6, 0x14, 0xC2, 0x28, 0xFB, 0x2C, 0x05,
        0x2B, 0x67, 0x9A, 0x76, 0x2A, 0xBE, 0x04, 0xC3, 0xAA, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
        0x9C, 0x42, 0x50, 0xF4, 0x91, 0xEF, 0x98, 0x7A, 0x33, 0x54, 0x0B, 0x43, 0xED, 0xCF, 0xAC, 0x62,
        0xE4, 0xB3, 0x1C, 0xA9, 0xC9, 0x08, 0xE8, 0x95, 0x80, 0xDF, 0x94, 0xFA, 0x75, 0x8F, 0x3F, 0xA6,
        0x47, 0x07, 0xA7, 0xFC, 0xF3, 0x73, 0x17, 0xBA, 0x83, 0x59, 0x3C, 0x19, 0xE6, 0x85, 0x4F, 0xA8,
        0x68, 0x6B, 0x81, 0xB2, 0x71, 0x64, 0xDA, 0x8B, 0xF8, 0xEB, 0x0F, 0x4B, 0x70, 0x56, 0x9D, 0x35,
        0x1E, 0x24, 0x0E, 0x5E, 0x63, 0x58, 0xD1, 0xA2, 0x25, 0x22, 0x7C, 0x3B, 0x01, 0x21, 0x78, 0x87,
        0xD4, 0x00, 0x46, 0x57, 0x9F, 0xD3, 0x27, 0x52, 0x4C, 0x36, 0x02, 0xE7, 0xA0, 0xC4, 0xC8, 0x9E,
        0xEA, 0xBF, 0x8A, 0xD2, 0x40, 0xC7, 0x38, 0xB5, 0xA3, 0xF7, 0xF2, 0xCE, 0xF9, 0x61, 0x15, 0xA1,
        0xE0, 0xAE, 0x5D, 0xA4, 0x9B, 0x34, 0x1A, 0x55, 0xAD, 0x93, 0x32, 0x30, 0xF5, 0x8C, 0xB1, 0xE3,
        0x1D, 0xF6, 0xE2, 0x2E, 0x82, 0x66, 0xCA, 0x60, 0xC0, 0x29, 0x23, 0xAB, 0x0D, 0x53, 0x4E, 0x6F,
        0xD5, 0xDB, 0x37, 0x45, 0xDE, 0xFD, 0x8E, 0x2F, 0x03, 0xFF, 0x6A, 0x72, 0x6D, 0x6C, 0x5B, 0x51,
        0x8D, 0x1B, 0xAF, 0x92, 0xBB, 0xDD, 0xBC, 0x7F, 0x11, 0xD9, 0x5C, 0x41, 0x1F, 0x10, 0x5A, 0xD8,
        0x0A, 0xC1, 0x31, 0x88, 0xA5, 0xCD, 0x7B, 0xBD, 0x2D, 0x74, 0xD0, 0x12, 0xB8, 0xE5, 0xB4, 0xB0,
        0x89, 0x69, 0x97, 0x4A, 0x0C, 0x96, 0x77, 0x7E, 0x65, 0xB9, 0xF1, 0x09, 0xC5, 0x6E, 0xC6, 0x84,
        0x18, 0xF0, 0x7D, 0xEC, 0x3A, 0xDC, 0x4D, 0x20, 0x79, 0xEE, 0x5F, 0x3E, 0xD7, 0xCB, 0x39, 0x48,
    ]
    static let fk: [UInt32] = [0xA3B1_BAC6, 0x56AA_3350, 0x677D_9197, 0xB270_22DC]
    /// CK_i: byte j of word i is (4i + j) · 7 mod 256.
    static let ck: [UInt32] = (0..<32).map { (i: Int) -> UInt32 in
        var word: UInt32 = 0
        for j in 0..<4 {
            let byte: Int = ((4 * i + j) * 7) % 256
            word = word << 8 | UInt32(byte)
        }
        return word
    }

    let roundKeys: [UInt32]

    public enum KeyError: Error, Sendable { case wrongLength(Int) }

    public init(key: [UInt8]) throws(KeyError) {
        guard key.count == 16 else { throw .wrongLength(key.count) }
        var k = (0..<4).map { Self.word(key, 4 * $0) ^ Self.fk[$0] }
        var rk = [UInt32](repeating: 0, count: 32)
        for i in 0..<32 {
            let next = k[i % 4] ^ Self.keyTransform(k[(i + 1) % 4] ^ k[(i + 2) % 4] ^ k[(i + 3) % 4] ^ Self.ck[i])
            rk[i] = next
            k[i % 4] = next
        }
        roundKeys = rk
    }

    @inline(__always) static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }

    @inline(__always) static func tau(_ a: UInt32) -> UInt32 {
        UInt32(sbox[Int(a >> 24)]) << 24 | UInt32(sbox[Int((a >> 16) & 0xFF)]) << 16
            | UInt32(sbox[Int((a >> 8) & 0xFF)]) << 8 | UInt32(sbox[Int(a & 0xFF)])
    }

    @inline(__always) static func roundTransform(_ a: UInt32) -> UInt32 {
        let b = tau(a)
        return b ^ rotl(b, 2) ^ rotl(b, 10) ^ rotl(b, 18) ^ rotl(b, 24)
    }

    @inline(__always) static func keyTransform(_ a: UInt32) -> UInt32 {
        let b = tau(a)
        return b ^ rotl(b, 13) ^ rotl(b, 23)
    }

    @inline(__always) static func word(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }

    /// One block (16 bytes at `offset` of `input`) into `output` at the same offset.
    @inline(__always) func crypt(_ input: [UInt8], _ offset: Int, into output: inout [UInt8], decrypt: Bool) {
        var x0 = Self.word(input, offset), x1 = Self.word(input, offset + 4)
        var x2 = Self.word(input, offset + 8), x3 = Self.word(input, offset + 12)
        for i in 0..<32 {
            let rk = roundKeys[decrypt ? 31 - i : i]
            let next = x0 ^ Self.roundTransform(x1 ^ x2 ^ x3 ^ rk)
            x0 = x1; x1 = x2; x2 = x3; x3 = next
        }
        for (n, w) in [x3, x2, x1, x0].enumerated() {
            output[offset + 4 * n] = UInt8(w >> 24)
            output[offset + 4 * n + 1] = UInt8(truncatingIfNeeded: w >> 16)
            output[offset + 4 * n + 2] = UInt8(truncatingIfNeeded: w >> 8)
            output[offset + 4 * n + 3] = UInt8(truncatingIfNeeded: w)
        }
    }

    public func encryptBlock(_ block: [UInt8]) -> [UInt8] {
        precondition(block.count == 16)
        var out = block
        crypt(block, 0, into: &out, decrypt: false)
        return out
    }

    public func decryptBlock(_ block: [UInt8]) -> [UInt8] {
        precondition(block.count == 16)
        var out = block
        crypt(block, 0, into: &out, decrypt: true)
        return out
    }
}

public enum SM4Error: Error, Sendable, Equatable {
    /// ECB/CBC without padding take whole blocks only.
    case notWholeBlocks(Int)
    case badPadding
    case wrongIVLength(Int)
    /// GCM: the tag does not match (tampered data, wrong key, nonce or associated data).
    case authenticationFailed
}

extension SM4 {
    // MARK: ECB and CBC

    /// ECB over whole blocks (the e-health card scheme's mode for IDs and keys).
    public func encryptECB(_ data: [UInt8]) throws(SM4Error) -> [UInt8] {
        guard data.count % 16 == 0 else { throw .notWholeBlocks(data.count) }
        var out = data
        for offset in stride(from: 0, to: data.count, by: 16) { crypt(data, offset, into: &out, decrypt: false) }
        return out
    }

    public func decryptECB(_ data: [UInt8]) throws(SM4Error) -> [UInt8] {
        guard data.count % 16 == 0 else { throw .notWholeBlocks(data.count) }
        var out = data
        for offset in stride(from: 0, to: data.count, by: 16) { crypt(data, offset, into: &out, decrypt: true) }
        return out
    }

    public func encryptCBC(_ data: [UInt8], iv: [UInt8]) throws(SM4Error) -> [UInt8] {
        guard iv.count == 16 else { throw .wrongIVLength(iv.count) }
        guard data.count % 16 == 0 else { throw .notWholeBlocks(data.count) }
        var out = data
        var previous = iv
        for offset in stride(from: 0, to: data.count, by: 16) {
            var block = Array(data[offset..<(offset + 16)])
            for i in 0..<16 { block[i] ^= previous[i] }
            var enciphered = block
            crypt(block, 0, into: &enciphered, decrypt: false)
            out.replaceSubrange(offset..<(offset + 16), with: enciphered)
            previous = enciphered
        }
        return out
    }

    public func decryptCBC(_ data: [UInt8], iv: [UInt8]) throws(SM4Error) -> [UInt8] {
        guard iv.count == 16 else { throw .wrongIVLength(iv.count) }
        guard data.count % 16 == 0 else { throw .notWholeBlocks(data.count) }
        var out = data
        for offset in stride(from: 0, to: data.count, by: 16) {
            crypt(data, offset, into: &out, decrypt: true)
            for i in 0..<16 { out[offset + i] ^= offset == 0 ? iv[i] : data[offset - 16 + i] }
        }
        return out
    }

    /// PKCS #7 padding (what `openssl enc` adds by default).
    public static func pad(_ data: [UInt8]) -> [UInt8] {
        let n = 16 - data.count % 16
        return data + [UInt8](repeating: UInt8(n), count: n)
    }

    public static func unpad(_ data: [UInt8]) throws(SM4Error) -> [UInt8] {
        guard let last = data.last, (1...16).contains(Int(last)), data.count >= Int(last),
              data.suffix(Int(last)).allSatisfy({ $0 == last }) else { throw .badPadding }
        return Array(data.dropLast(Int(last)))
    }

    // MARK: CTR and GCM (NIST SP 800-38D with SM4, as RFC 8998)

    func ctr(_ data: [UInt8], counter start: [UInt8]) -> [UInt8] {
        var counter = start
        var out = data
        var keystream = [UInt8](repeating: 0, count: 16)
        for offset in stride(from: 0, to: data.count, by: 16) {
            crypt(counter, 0, into: &keystream, decrypt: false)
            for i in 0..<min(16, data.count - offset) { out[offset + i] ^= keystream[i] }
            // Increment the low 32 bits (GCM's inc32).
            var i = 15
            while i >= 12 {
                counter[i] &+= 1
                if counter[i] != 0 { break }
                i -= 1
            }
        }
        return out
    }

    /// GCM encryption with a 96-bit nonce: ciphertext and 128-bit tag.
    public func sealGCM(_ plaintext: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws(SM4Error) -> (ciphertext: [UInt8], tag: [UInt8]) {
        guard nonce.count == 12 else { throw .wrongIVLength(nonce.count) }
        let j0 = nonce + [0, 0, 0, 1]
        var first = j0
        first[15] = 2
        let ciphertext = ctr(plaintext, counter: first)
        return (ciphertext, tag(j0: j0, associatedData: associatedData, ciphertext: ciphertext))
    }

    public func openGCM(_ ciphertext: [UInt8], tag: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws(SM4Error) -> [UInt8] {
        guard nonce.count == 12 else { throw .wrongIVLength(nonce.count) }
        let j0 = nonce + [0, 0, 0, 1]
        let expected = self.tag(j0: j0, associatedData: associatedData, ciphertext: ciphertext)
        // Compare without an early exit.
        guard tag.count == 16, zip(expected, tag).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else { throw .authenticationFailed }
        var first = j0
        first[15] = 2
        return ctr(ciphertext, counter: first)
    }

    func tag(j0: [UInt8], associatedData: [UInt8], ciphertext: [UInt8]) -> [UInt8] {
        let h = encryptBlock([UInt8](repeating: 0, count: 16))
        var ghash = GHash(h: h)
        ghash.absorb(associatedData)
        ghash.absorb(ciphertext)
        var lengths = [UInt8](repeating: 0, count: 16)
        let aBits = UInt64(associatedData.count) * 8, cBits = UInt64(ciphertext.count) * 8
        for i in 0..<8 {
            lengths[7 - i] = UInt8(truncatingIfNeeded: aBits >> (8 * UInt64(i)))
            lengths[15 - i] = UInt8(truncatingIfNeeded: cBits >> (8 * UInt64(i)))
        }
        ghash.block(lengths)
        let s = encryptBlock(j0)
        return zip(ghash.state, s).map { $0 ^ $1 }
    }
}

/// GHASH over GF(2^128) by shift-and-add: no tables, no branches on secret data.
struct GHash {
    let h: (UInt64, UInt64)
    var x: (UInt64, UInt64) = (0, 0)

    init(h: [UInt8]) {
        self.h = (Self.load(h, 0), Self.load(h, 8))
    }

    static func load(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(b[at + $1]) }
    }

    var state: [UInt8] {
        (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? x.0 : x.1) >> UInt64(56 - 8 * (i % 8))) }
    }

    /// Data zero-padded to whole blocks.
    mutating func absorb(_ data: [UInt8]) {
        for offset in stride(from: 0, to: data.count, by: 16) {
            var block = Array(data[offset..<min(offset + 16, data.count)])
            block += [UInt8](repeating: 0, count: 16 - block.count)
            self.block(block)
        }
    }

    mutating func block(_ b: [UInt8]) {
        x = (x.0 ^ Self.load(b, 0), x.1 ^ Self.load(b, 8))
        // x · h in GCM's bit order (bit 0 = most significant bit of byte 0).
        var z: (UInt64, UInt64) = (0, 0)
        var v = h
        for i in 0..<128 {
            let bit = i < 64 ? (x.0 >> UInt64(63 - i)) & 1 : (x.1 >> UInt64(127 - i)) & 1
            let mask = 0 &- bit
            z = (z.0 ^ (v.0 & mask), z.1 ^ (v.1 & mask))
            let lsb = v.1 & 1
            v = (v.0 >> 1, (v.1 >> 1) | (v.0 << 63))
            v.0 ^= 0xE100_0000_0000_0000 & (0 &- lsb)
        }
        x = z
    }
}
