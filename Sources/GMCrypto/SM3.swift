/// SM3 (GB/T 32905-2016), the Chinese commercial-cryptography hash: 256-bit digests over 512-bit
/// blocks, Merkle–Damgård with SHA-2-style padding. Only additions, rotations and bitwise
/// operations on 32-bit words, no tables and no data-dependent branches: constant time.
public struct SM3: Sendable {
    public static let digestBytes = 32
    public static let blockBytes = 64

    static let iv: [UInt32] = [0x7380_166F, 0x4914_B2B9, 0x1724_42D7, 0xDA8A_0600, 0xA96F_30BC, 0x1631_38AA, 0xE38D_EE4D, 0xB0FB_0E4E]
    /// T_j rotated left by j mod 32, precomputed for the 64 rounds.
    static let constants: [UInt32] = (0..<64).map { j in rotl(j < 16 ? 0x79CC_4519 : 0x7A87_9D8A, UInt32(j % 32)) }

    private var state = SM3.iv
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    public init() {
        buffer.reserveCapacity(Self.blockBytes)
    }

    /// The digest of `message` in one call.
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        var h = SM3()
        h.update(message)
        return h.finalize()
    }

    public mutating func update(_ bytes: [UInt8]) {
        var i = 0
        length &+= UInt64(bytes.count)
        if !buffer.isEmpty {
            let take = min(Self.blockBytes - buffer.count, bytes.count)
            buffer += bytes[0..<take]
            i = take
            guard buffer.count == Self.blockBytes else { return }
            Self.compress(&state, buffer[...])
            buffer.removeAll(keepingCapacity: true)
        }
        while i + Self.blockBytes <= bytes.count {
            Self.compress(&state, bytes[i..<(i + Self.blockBytes)])
            i += Self.blockBytes
        }
        buffer += bytes[i...]
    }

    public mutating func finalize() -> [UInt8] {
        let bits = length &* 8
        var tail = buffer
        tail.append(0x80)
        while tail.count % Self.blockBytes != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        var i = 0
        while i < tail.count {
            Self.compress(&state, tail[i..<(i + Self.blockBytes)])
            i += Self.blockBytes
        }
        buffer = []
        var out: [UInt8] = []
        out.reserveCapacity(Self.digestBytes)
        for word in state { out += [UInt8(word >> 24), UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 8), UInt8(truncatingIfNeeded: word)] }
        return out
    }

    @inline(__always) static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << (n & 31)) | (x >> ((32 - n) & 31)) }
    @inline(__always) static func p0(_ x: UInt32) -> UInt32 { x ^ rotl(x, 9) ^ rotl(x, 17) }
    @inline(__always) static func p1(_ x: UInt32) -> UInt32 { x ^ rotl(x, 15) ^ rotl(x, 23) }

    static func compress(_ v: inout [UInt32], _ block: ArraySlice<UInt8>) {
        var w = [UInt32](repeating: 0, count: 68)
        let base = block.startIndex
        for j in 0..<16 {
            let o = base + 4 * j
            w[j] = UInt32(block[o]) << 24 | UInt32(block[o + 1]) << 16 | UInt32(block[o + 2]) << 8 | UInt32(block[o + 3])
        }
        for j in 16..<68 {
            w[j] = p1(w[j - 16] ^ w[j - 9] ^ rotl(w[j - 3], 15)) ^ rotl(w[j - 13], 7) ^ w[j - 6]
        }
        var a = v[0], b = v[1], c = v[2], d = v[3], e = v[4], f = v[5], g = v[6], h = v[7]
        for j in 0..<64 {
            let a12 = rotl(a, 12)
            let ss1 = rotl(a12 &+ e &+ constants[j], 7)
            let ss2 = ss1 ^ a12
            let ff: UInt32, gg: UInt32
            if j < 16 {
                ff = a ^ b ^ c
                gg = e ^ f ^ g
            } else {
                ff = (a & b) | (a & c) | (b & c)
                gg = (e & f) | (~e & g)
            }
            let tt1 = ff &+ d &+ ss2 &+ (w[j] ^ w[j + 4])
            let tt2 = gg &+ h &+ ss1 &+ w[j]
            d = c
            c = rotl(b, 9)
            b = a
            a = tt1
            h = g
            g = rotl(f, 19)
            f = e
            e = p0(tt2)
        }
        v[0] ^= a; v[1] ^= b; v[2] ^= c; v[3] ^= d
        v[4] ^= e; v[5] ^= f; v[6] ^= g; v[7] ^= h
    }
}

/// HMAC (RFC 2104) with SM3.
public enum HMACSM3 {
    public static func authenticationCode(for message: [UInt8], key: [UInt8]) -> [UInt8] {
        var k = key.count > SM3.blockBytes ? SM3.hash(key) : key
        k += [UInt8](repeating: 0, count: SM3.blockBytes - k.count)
        var inner = SM3()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(message)
        var outer = SM3()
        outer.update(k.map { $0 ^ 0x5C })
        outer.update(inner.finalize())
        return outer.finalize()
    }
}

extension Array where Element == UInt8 {
    /// Upper-case hexadecimal, as the e-health card specification writes values.
    public var hexUppercase: String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes from hexadecimal text (nil if it is not an even number of hex digits).
    public init?(hex: String) {
        var bytes: [UInt8] = []
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let b = UInt8(String(decoding: chars[i...i + 1], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(b)
        }
        self = bytes
    }
}
