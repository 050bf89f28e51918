import Foundation

/// Base64 for `base64Binary` values (whitespace tolerated, as FHIR allows).
public enum Base64 {
    /// The bytes of standard, padded base64 (RFC 4648 §4); whitespace anywhere is skipped. Nil for
    /// any other character, a length that is not a multiple of 4, or misplaced padding. Written
    /// directly: a 1 MB document's attachment is decoded on every provide, and Foundation's
    /// decoder (a bridged copy of the string, then a copy of its result) cost twice as much.
    public static func decode(_ s: String) -> [UInt8]? {
        var s = s
        return s.withUTF8 { decode(UnsafeRawBufferPointer($0)) }
    }

    /// 0–63 for the alphabet, 64 for `=`, 65 for whitespace, 255 for anything else.
    static let decodeTable: [UInt8] = {
        var t = [UInt8](repeating: 255, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = UInt8(i) }
        t[Int(UInt8(ascii: "="))] = 64
        for c in [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")] { t[Int(c)] = 65 }
        return t
    }()

    public static func decode(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: maxDecodedCount(input.count)) { buffer, written in
            guard let n = decode(input, into: UnsafeMutableRawBufferPointer(buffer)) else { failed = true; written = 0; return }
            written = n
        }
        return failed ? nil : out
    }

    /// Room enough for what `count` characters of base64 decode to.
    public static func maxDecodedCount(_ count: Int) -> Int { count / 4 * 3 + 3 }

    /// Decodes into `buffer` (at least `maxDecodedCount(input.count)` bytes): the number of bytes
    /// written, or nil as `decode(_:)` answers nil. A stored document is decoded straight into the
    /// buffer the response sends.
    public static func decode(_ input: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let n = input.count
        precondition(buffer.count >= maxDecodedCount(n))
        return decodeTable.withUnsafeBufferPointer { table -> Int? in
            var o = 0, i = 0
            var quad: UInt32 = 0, filled = 0, padding = 0
            while i < n {
                // Fast path: four alphabet characters in a row.
                if filled == 0 && padding == 0 && i + 4 <= n {
                    let a = table[Int(input[i])], b = table[Int(input[i + 1])], c = table[Int(input[i + 2])], d = table[Int(input[i + 3])]
                    if (a | b | c | d) < 64 {
                        let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                        buffer[o] = UInt8(truncatingIfNeeded: v >> 16)
                        buffer[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
                        buffer[o + 2] = UInt8(truncatingIfNeeded: v)
                        o += 3
                        i += 4
                        continue
                    }
                }
                let v = table[Int(input[i])]
                i += 1
                switch v {
                case 65: continue
                case 64:
                    // Padding: only in the last quad's third or fourth place, and nothing but more padding after.
                    guard filled >= 2 else { return nil }
                    padding += 1
                    filled += 1
                case 255:
                    return nil
                default:
                    guard padding == 0 else { return nil }
                    quad = quad << 6 | UInt32(v)
                    filled += 1
                }
                if filled == 4 {
                    quad <<= UInt32(6 * padding)
                    buffer[o] = UInt8(truncatingIfNeeded: quad >> 16)
                    if padding < 2 { buffer[o + 1] = UInt8(truncatingIfNeeded: quad >> 8) }
                    if padding < 1 { buffer[o + 2] = UInt8(truncatingIfNeeded: quad) }
                    o += 3 - padding
                    quad = 0
                    filled = 0
                    if padding > 0 { padding = -1 }  // the end: only whitespace may follow
                }
            }
            return filled == 0 ? o : nil
        }
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { encode($0) }
    }

    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard, padded base64 (RFC 4648 §4), written straight into the string's storage: a
    /// document sent in its own content type is encoded once, without Foundation's copies.
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        guard bytes.count > 0 else { return "" }
        return String(unsafeUninitializedCapacity: encodedCount(bytes.count)) { out in encode(bytes, into: UnsafeMutableRawBufferPointer(out)) }
    }

    public static func encodedCount(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    /// Standard, padded base64 of `bytes` written into `out` (at least `encodedCount` bytes);
    /// returns the count written. Pieces of a longer text encode alike when all but the last hold
    /// a multiple of 3 bytes.
    @discardableResult
    public static func encode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        let n = bytes.count
        return alphabet.withUnsafeBufferPointer { table in
            var i = 0, o = 0
            while i + 3 <= n {
                let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                out[o] = table[Int(v >> 18)]
                out[o + 1] = table[Int(v >> 12 & 0x3F)]
                out[o + 2] = table[Int(v >> 6 & 0x3F)]
                out[o + 3] = table[Int(v & 0x3F)]
                i += 3
                o += 4
            }
            if i < n {
                let b = i + 1 < n ? UInt32(bytes[i + 1]) : 0
                let v = UInt32(bytes[i]) << 16 | b << 8
                out[o] = table[Int(v >> 18)]
                out[o + 1] = table[Int(v >> 12 & 0x3F)]
                out[o + 2] = i + 1 < n ? table[Int(v >> 6 & 0x3F)] : UInt8(ascii: "=")
                out[o + 3] = UInt8(ascii: "=")
                o += 4
            }
            return o
        }
    }

    /// base64url without padding (RFC 4648 §5; JWS, RFC 7515 §2), written directly: the blind
    /// index codes of every ID and phone number are made with it.
    static let urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func urlEncode(_ bytes: some Collection<UInt8>) -> String {
        let alphabet = urlAlphabet
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var it = bytes.makeIterator()
        while let a = it.next() {
            let b = it.next(), c = it.next()
            out.append(alphabet[Int(a >> 2)])
            out.append(alphabet[Int((a & 0x03) << 4 | (b ?? 0) >> 4)])
            guard let b else { break }
            out.append(alphabet[Int((b & 0x0F) << 2 | (c ?? 0) >> 6)])
            guard let c else { break }
            out.append(alphabet[Int(c & 0x3F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
