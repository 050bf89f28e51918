import FHIRModel
import GMCrypto

/// The texts of e-health card QR codes: static `<card id>:1`, and dynamic
/// `<card id>:0:<validity time>`, the validity time (`YYYYMMDDHHMMSS`, China time, zero-padded to
/// 16 bytes) SM4-ECB-encrypted under the card's user key and written in upper-case hex.
///
/// A dynamic code is accepted until its validity time; a changed or foreign token decrypts to
/// something that is not a time and is refused. How often a code was used is counted by the
/// verifier (it needs the store).
public enum CardCode: Sendable, Equatable {
    case staticCode(cardID: String)
    case dynamicCode(cardID: String, validity: String)

    public var cardID: String {
        switch self { case .staticCode(let id), .dynamicCode(let id, _): return id }
    }

    /// The QR text.
    public var text: String {
        switch self {
        case .staticCode(let id): return id + ":1"
        case .dynamicCode(let id, let validity): return id + ":0:" + validity
        }
    }

    public enum ParseError: Error, Sendable, Equatable { case notACardCode }

    public init(text: String) throws(ParseError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let hex = Set("0123456789ABCDEF")
        guard parts.count >= 2, parts[0].count == 64, parts[0].allSatisfy(hex.contains) else { throw .notACardCode }
        switch (parts[1], parts.count) {
        case ("1", 2): self = .staticCode(cardID: parts[0])
        case ("0", 3) where parts[2].count == 32 && parts[2].allSatisfy(hex.contains): self = .dynamicCode(cardID: parts[0], validity: parts[2])
        default: throw .notACardCode
        }
    }

    /// A dynamic code valid until `expires` (seconds since 1970).
    public static func dynamic(cardID: String, userKey: [UInt8], expires: Int) throws -> CardCode {
        let time = Array(chinaTime(expires).utf8) + [0, 0]
        return .dynamicCode(cardID: cardID, validity: try SM4(key: userKey).encryptECB(time).hexUppercase)
    }

    /// The validity time of a dynamic code (seconds since 1970), or nil when the token is not one
    /// this user key made (tampered, or another card's).
    public func expires(userKey: [UInt8]) -> Int? {
        guard case .dynamicCode(_, let validity) = self, let bytes = [UInt8](hex: validity),
              let sm4 = try? SM4(key: userKey), let plain = try? sm4.decryptECB(bytes),
              plain[14] == 0, plain[15] == 0, plain[0..<14].allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Self.seconds(String(decoding: plain[0..<14], as: UTF8.self))
    }

    /// `YYYYMMDDHHMMSS` in China Standard Time (UTC+8, no daylight saving).
    static func chinaTime(_ seconds: Int) -> String {
        FHIRDateTime.compactTimestamp(seconds: seconds, offsetHours: 8)
    }

    static func seconds(_ t: String) -> Int? {
        let c = Array(t.utf8).map { Int($0) - 48 }
        func n(_ r: Range<Int>) -> Int { c[r].reduce(0) { $0 * 10 + $1 } }
        let (y, m, d, hh, mm, ss) = (n(0..<4), n(4..<6), n(6..<8), n(8..<10), n(10..<12), n(12..<14))
        guard (1...12).contains(m), (1...31).contains(d), hh < 24, mm < 60, ss < 60 else { return nil }
        let days = FHIRDateTime.daysFromCivil(y, m, d)
        guard FHIRDateTime.civilFromDays(days) == (y, m, d) else { return nil }
        return days * 86_400 + hh * 3600 + mm * 60 + ss - 8 * 3600
    }
}
