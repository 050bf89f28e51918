import Access
import ArgumentParser
import Foundation
import Logging
import Store

/// OAuth2 clients: facility systems (HIS, LIS) that push and read data with tokens.
struct Client: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Register facility systems as OAuth2 clients (SMART Backend Services).",
        subcommands: [ClientCreate.self])
}

struct ClientCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Register a client and print its id (and secret: shown once, only its hash is kept).")

    @Option(help: "A name people recognise (e.g. '县人民医院 HIS').")
    var name: String

    @Option(help: "The facility (Organization id) the client acts for.")
    var facility: String?

    @Option(help: "The most it may be granted: space-separated SMART scopes, e.g. 'system/Patient.cruds system/Observation.cruds'.")
    var scopes: String

    @Option(help: "Role: \(Role.allCases.map(\.rawValue).joined(separator: ", ")).")
    var role: String = Role.facilitySystem.rawValue

    @Option(help: "A JWK Set file with the client's public keys: it authenticates with private_key_jwt and gets no secret.")
    var jwks: String?

    @Option(help: "An HL7 v2 sender this client is, as MSH-3^MSH-4 (e.g. 'HIS^county-hospital', or '^county-hospital' for any application there); repeatable. Its messages over MLLP are written as this client.")
    var hl7Sender: [String] = []

    @Option(help: "A URL prefix where this client's rest-hook subscriptions may deliver (e.g. 'https://his.example/hooks/'); repeatable. Other endpoints are refused.")
    var subscriptionEndpoint: [String] = []

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        guard let role = Role(rawValue: role) else { throw ValidationError("Unknown role '\(role)'") }
        let jwksText = try jwks.map { try String(contentsOfFile: $0, encoding: .utf8) }
        let store = try await storeOptions.open(logger: Logger(label: "huitong"))
        do {
            let (client, secret) = try await ClientRegistry.register(name: name, facility: facility, role: role, scopes: scopes,
                                                                     jwks: jwksText, hl7Senders: hl7Sender,
                                                                     subscriptionEndpoints: subscriptionEndpoint, in: store)
            print("client_id: \(client.id)")
            if let secret { print("client_secret: \(secret)    (shown once; keep it safe)") }
            print("scopes: \(client.scopes)")
        } catch let error as OAuthError {
            try await store.close()
            throw ValidationError(error.description)
        }
        try await store.close()
    }
}
