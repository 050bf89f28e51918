import Foundation

/// Base64 for `base64Binary` values (whitespace tolerated, as FHIR allows).
public enum Base64 {
    public static func decode(_ s: String) -> [UInt8]? {
        Data(base64Encoded: s, options: .ignoreUnknownCharacters).map { Array($0) }
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
