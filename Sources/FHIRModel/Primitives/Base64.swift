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
        let n = input.count
        var failed = false
        let out = decodeTable.withUnsafeBufferPointer { table -> [UInt8] in
            [UInt8](unsafeUninitializedCapacity: n / 4 * 3 + 3) { buffer, written in
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
                        guard filled >= 2 else { failed = true; written = o; return }
                        padding += 1
                        filled += 1
                    case 255:
                        failed = true; written = o; return
                    default:
                        guard padding == 0 else { failed = true; written = o; return }
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
                if filled != 0 { failed = true }
                written = o
            }
        }
        return failed ? nil : out
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
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
