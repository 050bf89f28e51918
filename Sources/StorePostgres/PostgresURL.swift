import Foundation
import PostgresNIO

/// `postgres://user:password@host:port/database?sslmode=disable|prefer|require` (also
/// `postgresql://`; `?host=/path` for a Unix socket folder) as a client configuration.
enum PostgresURL {
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static func configuration(_ string: String) throws -> PostgresClient.Configuration {
        guard let url = URLComponents(string: string), url.scheme == "postgres" || url.scheme == "postgresql" else {
            throw Invalid(description: "Not a PostgreSQL URL (postgres://user:password@host:port/database): \(redacted(string))")
        }
        let user = url.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        let password = url.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let database = url.path.isEmpty ? nil : String(url.path.dropFirst())
        let items = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        if let socketFolder = items["host"], socketFolder.hasPrefix("/") {
            let port = url.port ?? 5432
            return PostgresClient.Configuration(unixSocketPath: "\(socketFolder)/.s.PGSQL.\(port)", username: user,
                                                password: password, database: database)
        }
        let tls: PostgresClient.Configuration.TLS
        switch items["sslmode"] ?? "prefer" {
        case "disable": tls = .disable
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        return PostgresClient.Configuration(host: url.host ?? "localhost", port: url.port ?? 5432, username: user,
                                            password: password, database: database, tls: tls)
    }

    /// The URL with its password replaced, for logs and errors.
    static func redacted(_ string: String) -> String {
        guard var url = URLComponents(string: string), url.password != nil else { return string }
        url.password = "***"
        return url.string ?? "postgres://***"
    }
}
