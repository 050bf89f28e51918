import Foundation
import GMCrypto

/// Where cards' user keys come from: SM4-ECB under the issuer's root key of a card's
/// diversification factor ‖ NOT factor. The root key stays behind this interface, so that a
/// hardware security module or a provincial key service can answer instead of a key file.
public protocol CardKeyService: Sendable {
    /// The 16-byte user key of the card whose diversification factor (8 bytes) is given.
    func userKey(diversificationFactor: [UInt8]) async throws -> [UInt8]
}

/// A root key held in memory (read from a key file). Its description never shows the key, so it
/// cannot reach a log by accident.
public struct CardRootKey: CardKeyService, CustomStringConvertible, CustomDebugStringConvertible {
    let cipher: SM4

    public enum KeyError: Error, Sendable, Equatable, CustomStringConvertible {
        case length(Int)
        case notHex
        public var description: String {
            switch self {
            case .length(let n): "The card root key must be 16 bytes (32 hex digits), not \(n)"
            case .notHex: "The card root key must be written as 32 hex digits"
            }
        }
    }

    public init(bytes: [UInt8]) throws(KeyError) {
        guard bytes.count == 16 else { throw .length(bytes.count) }
        cipher = try! SM4(key: bytes)
    }

    /// A key file's text: 32 hex digits; blank lines and `#` comments ignored.
    public init(fileText: String) throws(KeyError) {
        let hex = fileText.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }.joined()
        guard let bytes = [UInt8](hex: hex) else { throw .notHex }
        try self.init(bytes: bytes)
    }

    /// The text of a new key file (16 random bytes).
    public static func newFileText() -> String {
        var rng = SystemRandomNumberGenerator()
        let key = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return "# Huitong e-health card root key (SM4, 16 bytes as hex). Cards' ids derive from it: keep it, back it up, never change it.\n"
            + key.hexUppercase + "\n"
    }

    public func userKey(diversificationFactor factor: [UInt8]) -> [UInt8] {
        precondition(factor.count == 8, "a diversification factor is 8 bytes")
        return try! cipher.encryptECB(factor + factor.map { ~$0 })
    }

    public var description: String { "CardRootKey(redacted)" }
    public var debugDescription: String { description }
}
