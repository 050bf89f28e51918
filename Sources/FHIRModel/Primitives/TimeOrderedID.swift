import Foundation

/// Server-assigned resource ids: UUIDs whose first 48 bits are the time in milliseconds (the
/// layout of UUID version 7, RFC 9562), the rest random. New resources' ids sort by creation, so
/// their rows in the (type, id) index — and in the reference index of whatever points at them —
/// land on the same few pages instead of one random page each: a commit writes fewer pages.
public enum TimeOrderedID {
    public static func make(now: Date = Date()) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in 6..<16 { bytes[i] = rng.next() }
        let ms = UInt64(now.timeIntervalSince1970 * 1000)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> (40 - 8 * UInt64(i))) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)  // version 7
        bytes[8] = 0x80 | (bytes[8] & 0x3F)  // variant 10
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { text.append(UInt8(ascii: "-")) }
            text += [digits[Int(b >> 4)], digits[Int(b & 0x0F)]]
        }
        return String(decoding: text, as: UTF8.self)
    }
}
