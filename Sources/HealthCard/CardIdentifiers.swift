import GMCrypto

/// The identifiers of the national e-health card scheme (电子健康卡), derived from a resident's
/// document type and number with SM3 and SM4:
/// - 主索引ID (master index id): upper-case hex SM3(type ‖ number ‖ "电子健康卡"), UTF-8;
/// - diversification factor: the XOR of the digest's four 8-byte blocks;
/// - user key: SM4-ECB under the root key of factor ‖ NOT factor;
/// - 电子健康卡ID (card id): upper-case hex SM4-ECB under the user key of (type ‖ number), zero-padded
///   to 32 bytes.
public struct CardIdentifiers: Sendable, Equatable {
    public let masterIndexID: String
    public let diversificationFactor: [UInt8]
    public let userKey: [UInt8]
    public let cardID: String

    public enum DerivationError: Error, Sendable, Equatable {
        /// The root key must be 16 bytes.
        case rootKeyLength(Int)
        /// Type and number together must fit the 32-byte block the card id encrypts.
        case documentTooLong(Int)
    }

    /// - Parameters:
    ///   - documentType: 证件类型, e.g. `01` for the resident identity card.
    ///   - documentNumber: 证件号码.
    ///   - rootKey: the issuer's 16-byte SM4 root key.
    public init(documentType: String, documentNumber: String, rootKey: [UInt8]) throws(DerivationError) {
        guard rootKey.count == 16 else { throw .rootKeyLength(rootKey.count) }
        let document = Array((documentType + documentNumber).utf8)
        guard document.count <= 32 else { throw .documentTooLong(document.count) }
        let digest = SM3.hash(document + Array("电子健康卡".utf8))
        masterIndexID = digest.hexUppercase
        var factor = [UInt8](repeating: 0, count: 8)
        for block in 0..<4 { for i in 0..<8 { factor[i] ^= digest[8 * block + i] } }
        diversificationFactor = factor
        // The key length was checked above; ECB input is whole blocks by construction.
        let root = try! SM4(key: rootKey)
        userKey = try! root.encryptECB(factor + factor.map { ~$0 })
        let user = try! SM4(key: userKey)
        cardID = try! user.encryptECB(document + [UInt8](repeating: 0, count: 32 - document.count)).hexUppercase
    }
}
