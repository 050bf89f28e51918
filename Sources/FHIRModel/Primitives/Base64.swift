import Foundation

/// Base64 for `base64Binary` values (whitespace tolerated, as FHIR allows).
public enum Base64 {
    public static func decode(_ s: String) -> [UInt8]? {
        Data(base64Encoded: s, options: .ignoreUnknownCharacters).map { Array($0) }
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }
}
