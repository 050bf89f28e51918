import Foundation

/// Server-assigned resource ids: UUIDs whose first 48 bits are the time in milliseconds (the
/// layout of UUID version 7, RFC 9562), the rest random. New resources' ids sort by creation, so
/// their rows in the (type, id) index — and in the reference index of whatever points at them —
/// land on the same few pages instead of one random page each: a commit writes fewer pages.
public enum TimeOrderedID {
    public static func make(now: Date = Date()) -> String {
        var rng = SystemRandomNumberGenerator()
        let ms = UInt64(now.timeIntervalSince1970 * 1000)
        // 48 bits of time, version 7, 12 random bits; variant 10, 62 random bits.
        let high: UInt64 = ms << 16 | 0x7000 | rng.next() & 0x0FFF
        let low: UInt64 = 0x8000_0000_0000_0000 | rng.next() & 0x3FFF_FFFF_FFFF_FFFF
        return RandomUUID.text(high: high, low: low)
    }
}

/// Random UUIDs (version 4) in lower case, as placeholders such as a Bundle entry's
/// `urn:uuid:` full URL or a message control id. Two draws of the system generator; Foundation's
/// `UUID()` on Linux opens and reads `/dev/urandom` for every one.
public enum RandomUUID {
    public static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        let high: UInt64 = 0x4000 | rng.next() & 0xFFFF_FFFF_FFFF_0FFF
        let low: UInt64 = 0x8000_0000_0000_0000 | rng.next() & 0x3FFF_FFFF_FFFF_FFFF
        return text(high: high, low: low)
    }

    /// The 8-4-4-4-12 hexadecimal form of a UUID's two halves.
    static func text(high: UInt64, low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 36) { out in
            let digits: StaticString = "0123456789abcdef"
            var i = 0
            func put(_ value: UInt64, nibbles: Int) {
                for n in stride(from: nibbles - 1, through: 0, by: -1) {
                    out[i] = digits.utf8Start[Int(value >> UInt64(4 * n) & 0xF)]
                    i += 1
                }
            }
            put(high >> 32, nibbles: 8)
            out[i] = UInt8(ascii: "-"); i += 1
            put(high >> 16, nibbles: 4)
            out[i] = UInt8(ascii: "-"); i += 1
            put(high, nibbles: 4)
            out[i] = UInt8(ascii: "-"); i += 1
            put(low >> 48, nibbles: 4)
            out[i] = UInt8(ascii: "-"); i += 1
            put(low, nibbles: 12)
            return i
        }
    }
}
