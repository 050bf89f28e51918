import GMCrypto

/// A resident's document as the national e-health card scheme (电子健康卡) uses it: 证件类型
/// (document type, CV02.01.101: `01` resident identity card, `03` passport, ...) and 证件号码
/// (document number). Everything about the card that needs no key is derived here:
/// - 主索引ID (master index id): upper-case hex SM3(type ‖ number ‖ "电子健康卡"), UTF-8;
/// - diversification factor: the XOR of that digest's four 8-byte blocks.
public struct CardDocument: Sendable, Equatable {
    public let type: String
    public let number: String
    public let masterIndexID: String
    public let diversificationFactor: [UInt8]
    let bytes: [UInt8]

    public init(type: String, number: String) throws(CardIdentifiers.DerivationError) {
        let bytes = Array((type + number).utf8)
        guard bytes.count <= 32 else { throw .documentTooLong(bytes.count) }
        self.type = type
        self.number = number
        self.bytes = bytes
        let digest = SM3.hash(bytes + Array("电子健康卡".utf8))
        masterIndexID = digest.hexUppercase
        diversificationFactor = Self.factor(digest)
    }

    static func factor(_ digest: [UInt8]) -> [UInt8] {
        var factor = [UInt8](repeating: 0, count: 8)
        for block in 0..<4 { for i in 0..<8 { factor[i] ^= digest[8 * block + i] } }
        return factor
    }

    /// 电子健康卡ID: upper-case hex SM4-ECB under the user key of (type ‖ number) zero-padded to
    /// 32 bytes.
    public func cardID(userKey: [UInt8]) throws -> String {
        try SM4(key: userKey).encryptECB(bytes + [UInt8](repeating: 0, count: 32 - bytes.count)).hexUppercase
    }
}

/// The identifiers of the national e-health card scheme, derived from a resident's document and
/// the issuer's root key: `CardDocument`'s master index id and factor, then
/// - user key: SM4-ECB under the root key of factor ‖ NOT factor;
/// - 电子健康卡ID (card id): see `CardDocument.cardID(userKey:)`.
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
        let document = try CardDocument(type: documentType, number: documentNumber)
        let key = try! CardRootKey(bytes: rootKey)
        self.init(document: document, userKey: key.userKey(diversificationFactor: document.diversificationFactor))
    }

    public init(document: CardDocument, userKey: [UInt8]) {
        masterIndexID = document.masterIndexID
        diversificationFactor = document.diversificationFactor
        self.userKey = userKey
        // A user key is 16 bytes by construction; the document fits its 32-byte block.
        cardID = try! document.cardID(userKey: userKey)
    }
}
