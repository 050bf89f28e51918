import Crypto
import FHIRModel
import Foundation

/// The offline-verifiable card code, for village clinics without a network: a compact JWS
/// (RFC 7515) signed with ES256, header `{"alg":"ES256","kid":…,"typ":"hc"}`, claims
/// `{"sub":<card id>,"exp":<seconds>}`. A verifier holding the platform's published keys
/// (`GET /card/keys`, a JWK Set) checks it with any JOSE library. 266 characters: a version-10
/// QR code at level L. (SM2 signatures can replace ES256 when SM2 lands; the `alg` says which.)
///
/// Offline, a verifier cannot know that a card was suspended after the token was made; the
/// token's lifetime bounds that.
public struct OfflineCardKeys: Sendable {
    public struct Key: Sendable {
        public let kid: String
        let key: P256.Signing.PrivateKey
    }

    /// Every key verifies; the last one signs.
    public let keys: [Key]

    public enum Problem: Error, Sendable, Equatable {
        case malformed
        case unknownKey(String)
        case badSignature
    }

    /// - Parameter pems: PKCS#8 or SEC1 PEM private keys, oldest first.
    public init(pems: [String]) throws {
        keys = try pems.map { pem in
            let key = try P256.Signing.PrivateKey(pemRepresentation: pem)
            return Key(kid: Self.kid(key.publicKey), key: key)
        }
        guard !keys.isEmpty else { throw Problem.unknownKey("no key") }
    }

    public static func newPEM() -> String { P256.Signing.PrivateKey().pemRepresentation }

    /// A short key id: the first 8 characters of the key's RFC 7638 JWK thumbprint.
    static func kid(_ key: P256.Signing.PublicKey) -> String {
        let (x, y) = coordinates(key)
        let canonical = #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
        return String(base64url(Array(SHA256.hash(data: Array(canonical.utf8)))).prefix(8))
    }

    static func coordinates(_ key: P256.Signing.PublicKey) -> (x: String, y: String) {
        let raw = Array(key.rawRepresentation)   // x ‖ y, 32 bytes each
        return (base64url(Array(raw[0..<32])), base64url(Array(raw[32..<64])))
    }

    /// The public keys as a JWK Set.
    public var jwks: String {
        let entries = keys.map { k -> String in
            let (x, y) = Self.coordinates(k.key.publicKey)
            return #"{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"\#(k.kid)","x":"\#(x)","y":"\#(y)"}"#
        }
        return #"{"keys":["# + entries.joined(separator: ",") + "]}"
    }

    /// A token for `cardID` valid until `expires` (seconds since 1970).
    public func sign(cardID: String, expires: Int) throws -> String {
        let signer = keys[keys.count - 1]
        let header = Self.base64url(Array(#"{"alg":"ES256","kid":"\#(signer.kid)","typ":"hc"}"#.utf8))
        let claims = Self.base64url(Array(#"{"sub":"\#(cardID)","exp":\#(expires)}"#.utf8))
        let input = header + "." + claims
        let signature = try signer.key.signature(for: Array(input.utf8))
        return input + "." + Self.base64url(Array(signature.rawRepresentation))
    }

    /// Whether `text` has the shape of a compact JWS (three base64url parts).
    public static func looksLikeToken(_ text: String) -> Bool {
        text.split(separator: ".", omittingEmptySubsequences: false).count == 3 && text.hasPrefix("eyJ")
    }

    /// The card id and expiry of a token one of these keys signed.
    public func verify(_ token: String) throws(Problem) -> (cardID: String, expires: Int) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Self.decode(parts[0]), let claimBytes = Self.decode(parts[1]),
              let signatureBytes = Self.decode(parts[2]),
              let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
              let claims = try? JSONSerialization.jsonObject(with: Data(claimBytes)) as? [String: Any],
              header["alg"] as? String == "ES256", let kid = header["kid"] as? String,
              let cardID = claims["sub"] as? String, let expires = (claims["exp"] as? NSNumber)?.intValue else { throw .malformed }
        guard let key = keys.first(where: { $0.kid == kid }) else { throw .unknownKey(kid) }
        guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signatureBytes),
              key.key.publicKey.isValidSignature(signature, for: Array((parts[0] + "." + parts[1]).utf8)) else { throw .badSignature }
        return (cardID, expires)
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Base64.urlEncode(bytes)
    }

    static func decode(_ text: Substring) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map(Array.init)
    }
}
