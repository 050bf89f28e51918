import FHIRModel
import Foundation
import Logging
import Store

/// A request the platform refuses, with the HTTP status and the issues for the
/// OperationOutcome. Domain code throws these; the HTTP layer only renders them.
public struct FHIRError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let issues: [Issue]

    public init(_ status: Int, _ issues: [Issue]) {
        self.status = status
        self.issues = issues
    }

    public init(_ status: Int, code: String, _ message: String, at expression: String? = nil) {
        self.init(status, [Issue(code: code, message, at: expression)])
    }

    public var description: String { "\(status): " + issues.map(\.description).joined(separator: "; ") }

    public static func notFound(_ key: ResourceKey) -> FHIRError {
        FHIRError(404, code: "not-found", "Resource \(key) is not known")
    }

    public static func gone(_ key: ResourceKey, version: Int) -> FHIRError {
        FHIRError(410, code: "deleted", "Resource \(key) was deleted (version \(version))")
    }

    /// A failure of the server's own (the store's engine, a bug): the details go to the log under an
    /// incident number, and the client gets only that number — no database text, no stack, nothing
    /// that describes the server's internals or anyone's data.
    public static func internalError(_ error: Any, logger: Logger = Incident.logger) -> FHIRError {
        FHIRError(500, code: "exception", "Internal error; incident \(Incident.report(error, logger: logger)) is in the server's log")
    }

    /// Maps a store refusal to its FHIR status.
    static func from(_ error: StoreError) -> FHIRError {
        switch error {
        case .versionConflict(let key, let expected, let current):
            return FHIRError(412, code: "conflict",
                             "Version conflict on \(key): If-Match expected version \(expected), current is \(current.map(String.init) ?? "none")")
        case .alreadyExists(let key):
            return FHIRError(409, code: "duplicate", "Resource \(key) already exists")
        case .conditionChanged:
            return FHIRError(409, code: "conflict", "Concurrent writes changed the result of a conditional interaction; retry")
        case .recordExists(let kind, let id):
            return FHIRError(409, code: "duplicate", "The \(kind) '\(id)' exists already")
        case .storage(let message):
            return internalError(StoreError.storage(message))
        }
    }
}

/// Internal failures, logged with a number the client is given instead of the failure's text.
public enum Incident {
    public static let logger = Logger(label: "huitong.incident")

    /// Logs `error` under a new incident number and returns the number.
    public static func report(_ error: Any, logger: Logger = Incident.logger) -> String {
        let id = String(UUID().uuidString.prefix(8)).lowercased()
        logger.error("incident \(id): \(error)")
        return id
    }
}
