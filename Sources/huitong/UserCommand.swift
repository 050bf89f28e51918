import Access
import ArgumentParser
import Foundation
import Logging
import Store

/// People: clinicians, CDC staff, operators, residents (password + TOTP).
struct User: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Create accounts for people (password and TOTP second factor).",
        subcommands: [UserCreate.self])
}

struct UserCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an account; prints its first password and TOTP enrolment URI once.")

    @Option(help: "Login name (letters, digits, . _ - @).")
    var username: String

    @Option(help: "Role: \(Role.allCases.map(\.rawValue).joined(separator: ", ")).")
    var role: String

    @Option(help: "The facility (Organization id) the person works at.")
    var facility: String?

    @Option(help: "For a resident: their master Person (Person/<id>).")
    var patient: String?

    @Option(help: "The most a login grants: space-separated SMART scopes (e.g. 'user/*.rs').")
    var scopes: String

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        guard let role = Role(rawValue: role) else { throw ValidationError("Unknown role '\(role)'") }
        let store = try await storeOptions.open(logger: Logger(label: "huitong"))
        do {
            let created = try await UserDirectory.create(username: username, role: role, facility: facility, patient: patient,
                                                         scopes: scopes, in: store)
            UserCreate.show(created)
        } catch let error as OAuthError {
            try await store.close()
            throw ValidationError(error.description)
        }
        try await store.close()
    }

    /// Written to standard output and flushed at once: redirected to a file, the only copy of the
    /// password must not wait in a buffer for the process to exit (a `kill -9` would lose it).
    static func show(_ created: UserDirectory.Created) {
        let text = "username: \(created.account.username)\n"
            + "password: \(created.password)    (shown once)\n"
            + "totp: \(created.totpURI)    (add to an authenticator app; shown once)\n"
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
