import FHIRModel
import Foundation
import Platform
import GMCrypto
import HealthCard
import Store

/// How the platform issues and checks e-health cards (`serve --card-*`).
public struct CardSettings: Sendable {
    /// Seconds a dynamic QR code is valid.
    public var dynamicLifetime = 60
    /// Successful verifications one dynamic code allows (a registration window, then payment, then
    /// the pharmacy within its minute).
    public var dynamicMaxUses = 3
    /// Seconds an offline (signed) code is valid: a suspension reaches offline verifiers only when
    /// the codes made before it expire.
    public var offlineLifetime = 86_400
    /// The clock (seconds since 1970); tests move it.
    public var clock: @Sendable () -> Double = { Date().timeIntervalSince1970 }

    public init() {}
}

/// The keys of card issuance: the SM4 root key (behind `CardKeyService`) and the ES256 keys of
/// offline codes.
public struct CardKeyring: Sendable {
    public let root: any CardKeyService
    public let offline: OfflineCardKeys

    public init(root: any CardKeyService, offline: OfflineCardKeys) {
        self.root = root
        self.offline = offline
    }
}

/// 卡状态: normal (正常), suspended after a loss report (挂失), cancelled (注销).
enum CardStatus: String, Sendable {
    case normal, suspended, cancelled
}

/// A card as the platform keeps it (platform record kind `health-card`, id the card id). The
/// document number itself is not kept here: the diversification factor is what verification
/// needs, and the number stays encrypted on the master Person.
struct CardRecord: Sendable {
    static let kind = "health-card"
    /// Successful uses of dynamic codes (`<card id>:<validity>#<n>`, one record per use).
    static let useKind = "health-card-use"

    var id: String
    var person: ResourceKey
    var documentType: String
    var temporary: Bool
    var factor: [UInt8]
    var masterIndexID: String
    var status: CardStatus
    /// Seconds since 1970.
    var issued: Int
    /// When the card was last re-issued (补发): codes made before then are revoked.
    var reissued: Int?
    /// The card's life: issue, suspend, resume, cancel, reissue, with who and why.
    var events: [JSON]
    /// The facility that issued it (nil: the platform or an administrator): its counter may show
    /// the card's codes to the resident.
    var issuer: String?

    init(id: String, person: ResourceKey, document: CardDocument, temporary: Bool, issued: Int, by: String, issuer: String? = nil) {
        self.id = id
        self.issuer = issuer
        self.person = person
        self.documentType = document.type
        self.temporary = temporary
        self.factor = document.diversificationFactor
        self.masterIndexID = document.masterIndexID
        self.status = .normal
        self.issued = issued
        self.events = []
        record("issue", at: issued, by: by, reason: nil)
    }

    init?(_ stored: PlatformRecord) {
        guard case .object(let o)? = try? JSONParser.parse(Array(stored.content.utf8)),
              let person = o["person"]?.stringValue.flatMap(Self.key), let type = o["documentType"]?.stringValue,
              let factor = o["factor"]?.stringValue.flatMap({ [UInt8](hex: $0) }), factor.count == 8,
              let status = o["status"]?.stringValue.flatMap(CardStatus.init(rawValue:)),
              let issued = o["issued"]?.numberText.flatMap({ Int($0) }) else { return nil }
        id = stored.id
        self.person = person
        documentType = type
        temporary = o["temporary"]?.boolValue ?? false
        self.factor = factor
        masterIndexID = o["masterIndexID"]?.stringValue ?? ""
        self.status = status
        self.issued = issued
        reissued = o["reissued"]?.numberText.flatMap { Int($0) }
        events = o["events"]?.arrayValue ?? []
        issuer = o["issuer"]?.stringValue
    }

    var stored: PlatformRecord {
        var o = JSONObject()
        o["person"] = .string(person.description)
        o["documentType"] = .string(documentType)
        o["temporary"] = .bool(temporary)
        o["factor"] = .string(factor.hexUppercase)
        o["masterIndexID"] = .string(masterIndexID)
        o["status"] = .string(status.rawValue)
        o["issued"] = .number(String(issued))
        if let reissued { o["reissued"] = .number(String(reissued)) }
        o["events"] = .array(events)
        if let issuer { o["issuer"] = .string(issuer) }
        return PlatformRecord(kind: Self.kind, id: id, content: JSONWriter.string(.object(o)))
    }

    mutating func record(_ action: String, at: Int, by: String, reason: String?) {
        var e = JSONObject([("action", .string(action)), ("at", .string(Self.instant(at))), ("by", .string(by))])
        if let reason { e["reason"] = .string(reason) }
        events.append(.object(e))
    }

    /// The card as the API shows it.
    var json: JSON {
        .object(JSONObject([
            ("id", .string(id)), ("person", .string(person.description)), ("status", .string(status.rawValue)),
            ("temporary", .bool(temporary)), ("documentType", .string(documentType)), ("masterIndexID", .string(masterIndexID)),
            ("issued", .string(Self.instant(issued))), ("history", .array(events)),
        ]))
    }

    static func instant(_ seconds: Int) -> String { FHIRDateTime.formatInstant(micros: Int64(seconds) * 1_000_000) }

    /// `Person/x` (or a full URL ending so) as a key.
    static func key(_ reference: String) -> ResourceKey? {
        let parts = reference.split(separator: "/").suffix(2).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty, FHIRSchema.r4.isResourceType(parts[0]) else { return nil }
        return ResourceKey(parts[0], parts[1])
    }
}
