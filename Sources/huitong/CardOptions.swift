import ArgumentParser
import Cards
import Foundation
import HealthCard
import Platform

/// `serve` options of the e-health card service.
struct CardOptions: ParsableArguments {
    @Option(help: "The e-health card SM4 root key file (32 hex digits). Card ids derive from it: made if missing, then never change it; keep it apart from the data and back it up. Default: <data>/keys/card-root-key. Env: HUITONG_CARD_ROOT_KEY_FILE")
    var cardRootKey: String? = ProcessInfo.processInfo.environment["HUITONG_CARD_ROOT_KEY_FILE"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "Seconds a dynamic card QR code is valid.")
    var cardCodeLifetime: Int = 60

    @Option(help: "Successful verifications one dynamic card code allows.")
    var cardCodeMaxUses: Int = 3

    @Option(help: "Seconds an offline (signed) card code is valid; a suspension reaches offline verifiers only after it.")
    var cardOfflineLifetime: Int = 86_400

    func settings() throws -> CardSettings {
        guard cardCodeLifetime > 0, cardCodeMaxUses > 0, cardOfflineLifetime > 0 else {
            throw ValidationError("--card-code-lifetime, --card-code-max-uses and --card-offline-lifetime must be positive")
        }
        var s = CardSettings()
        s.dynamicLifetime = cardCodeLifetime
        s.dynamicMaxUses = cardCodeMaxUses
        s.offlineLifetime = cardOfflineLifetime
        return s
    }

    /// The root key (made on first start) and the offline-code signing keys: `card-<name>.pem` in
    /// the key folder, the last by name signing (one is made if there is none).
    func keyring(data: String, keyFolder: String?) throws -> CardKeyring {
        let folder = keyFolder ?? (data as NSString).appendingPathComponent("keys")
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let rootPath = cardRootKey ?? (folder as NSString).appendingPathComponent("card-root-key")
        if !fm.fileExists(atPath: rootPath) {
            guard fm.createFile(atPath: rootPath, contents: Data(CardRootKey.newFileText().utf8), attributes: [.posixPermissions: 0o600]) else {
                throw ValidationError("Cannot write the card root key \(rootPath)")
            }
        }
        let root: CardRootKey
        do { root = try CardRootKey(fileText: try String(contentsOfFile: rootPath, encoding: .utf8)) } catch {
            throw ValidationError("Card root key \(rootPath): \(error)")
        }
        var names = try fm.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("card-") && $0.hasSuffix(".pem") }.sorted()
        if names.isEmpty {
            let stamp = String(Int(Date().timeIntervalSince1970), radix: 36)
            let name = "card-\(stamp).pem"
            guard fm.createFile(atPath: (folder as NSString).appendingPathComponent(name), contents: Data(OfflineCardKeys.newPEM().utf8),
                                attributes: [.posixPermissions: 0o600]) else {
                throw ValidationError("Cannot write the card signing key in \(folder)")
            }
            names = [name]
        }
        let pems = try names.map { try String(contentsOfFile: (folder as NSString).appendingPathComponent($0), encoding: .utf8) }
        return CardKeyring(root: root, offline: try OfflineCardKeys(pems: pems))
    }
}
