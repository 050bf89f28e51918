import Crypto
import Foundation
import _CryptoExtras

/// People's passwords: PBKDF2-HMAC-SHA256 with a random salt (no plain or fast hashes), stored as
/// `pbkdf2-sha256$<rounds>$<salt>$<hash>` (base64) so the rounds can rise later.
public enum PasswordHash {
    /// OWASP's figure for PBKDF2-HMAC-SHA256 (2021). Hashing uses swift-crypto's
    /// `unsafeUncheckedRounds` so that stored hashes with their own count verify; only tests go lower.
    public static let rounds = 310_000

    public static func make(_ password: String, rounds: Int = rounds) throws -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: rounds)
        let hash = key.withUnsafeBytes { Data($0) }
        return "pbkdf2-sha256$\(rounds)$\(Data(salt).base64EncodedString())$\(hash.base64EncodedString())"
    }

    public static func verify(_ password: String, _ stored: String) -> Bool {
        let parts = stored.split(separator: "$")
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let rounds = Int(parts[1]),
              let salt = Data(base64Encoded: String(parts[2])), let expected = Data(base64Encoded: String(parts[3])),
              let key = try? KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                           outputByteCount: expected.count, unsafeUncheckedRounds: rounds) else { return false }
        let actual = key.withUnsafeBytes { Data($0) }
        return zip(actual, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0 && actual.count == expected.count
    }
}

/// Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the second
/// factor authenticator apps generate from a base32 secret.
public enum TOTP {
    public static let step: Int64 = 30

    public static func newSecret() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<20).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// The code for time step `counter` (`digits` long).
    public static func code(secret: [UInt8], counter: Int64, digits: Int = 6) -> String {
        var big = counter.bigEndian
        let message = withUnsafeBytes(of: &big) { Data($0) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
        let offset = Int(mac[mac.count - 1] & 0x0f)
        let value = (UInt32(mac[offset] & 0x7f) << 24) | (UInt32(mac[offset + 1]) << 16) | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus *= 10 }
        let text = String(value % modulus)
        return String(repeating: "0", count: digits - text.count) + text
    }

    /// The time step `code` belongs to, within one step of `now` either way and later than
    /// `after` (a code is good once); nil if it fits none.
    public static func verify(_ code: String, secret: [UInt8], now: Date, after: Int64?) -> Int64? {
        let current = Int64(now.timeIntervalSince1970) / step
        for counter in [current, current - 1, current + 1] where counter > (after ?? Int64.min) {
            if Self.code(secret: secret, counter: counter) == code { return counter }
        }
        return nil
    }

    /// `otpauth://` URI for authenticator apps.
    public static func uri(secret: [UInt8], account: String, issuer: String = "Huitong") -> String {
        let label = "\(issuer):\(account)".addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? account
        return "otpauth://totp/\(label)?secret=\(Base32.encode(secret))&issuer=\(issuer)&algorithm=SHA1&digits=6&period=30"
    }
}

/// RFC 4648 base32 (authenticator apps' secret format), without padding.
public enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer: UInt32 = 0, bits = 0
        for b in bytes {
            buffer = (buffer << 8) | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer: UInt32 = 0, bits = 0
        for c in text.uppercased().utf8 where c != UInt8(ascii: "=") {
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            buffer = (buffer << 5) | UInt32(v)
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> UInt32(bits - 8)) & 0xff))
                bits -= 8
            }
        }
        return out
    }
}
