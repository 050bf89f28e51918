import FHIRModel
import Foundation
import Logging
import Store

/// A request the platform refuses: what kind of refusal (`Category`) and the issues for the
/// OperationOutcome, each with its FHIRPath location where it has one. Domain code throws these and
/// never names a transport: the HTTP layer chooses the status for a category, the HL7 gateway the
/// acknowledgement code (ADR 018).
public struct FHIRError: Error, Sendable, CustomStringConvertible {
    public enum Category: String, Sendable, CaseIterable {
        /// The request or the resource is malformed or fails validation.
        case invalid
        /// No valid credential.
        case unauthorized
        /// The principal may not do this.
        case forbidden
        /// No such resource, type, version or operation (or one the caller may not know of).
        case notFound
        /// The interaction does not apply to this type (AuditEvents are written by the server).
        case notAllowed
        /// The response format asked for is not offered.
        case notAcceptable
        /// The write conflicts with the current state (a duplicate, a concurrent change).
        case conflict
        /// The resource was deleted.
        case gone
        /// A precondition does not hold: `If-Match`, more than one conditional match.
        case preconditionFailed
        /// The request is larger than the server accepts.
        case tooCostly
        /// The body's format is not one the server reads.
        case unsupportedFormat
        /// The resource is well formed but breaks a business rule.
        case businessRule
        /// Too many requests from this caller.
        case tooManyRequests
        /// The server cannot store what was sent now (its disk is down to the reserve kept for commits).
        case insufficientStorage
        /// The server does not implement what was asked.
        case unsupported
        /// The server's own failure.
        case `internal`
    }

    public let category: Category
    public let issues: [Issue]

    public init(_ category: Category, _ issues: [Issue]) {
        self.category = category
        self.issues = issues
    }

    public init(_ category: Category, code: String, _ message: String, at expression: String? = nil) {
        self.init(category, [Issue(code: code, message, at: expression)])
    }

    public var description: String { "\(category.rawValue): " + issues.map(\.description).joined(separator: "; ") }

    public static func notFound(_ key: ResourceKey) -> FHIRError {
        FHIRError(.notFound, code: "not-found", "Resource \(key) is not known")
    }

    public static func gone(_ key: ResourceKey, version: Int) -> FHIRError {
        FHIRError(.gone, code: "deleted", "Resource \(key) was deleted (version \(version))")
    }

    /// A failure of the server's own (the store's engine, a bug): the details go to the log under an
    /// incident number, and the client gets only that number — no database text, no stack, nothing
    /// that describes the server's internals or anyone's data.
    public static func internalError(_ error: Any, logger: Logger = Incident.logger) -> FHIRError {
        FHIRError(.internal, code: "exception", "Internal error; incident \(Incident.report(error, logger: logger)) is in the server's log")
    }

    /// Maps a store refusal to its FHIR status.
    static func from(_ error: StoreError) -> FHIRError {
        switch error {
        case .versionConflict(let key, let expected, let current):
            return FHIRError(.preconditionFailed, code: "conflict",
                             "Version conflict on \(key): If-Match expected version \(expected), current is \(current.map(String.init) ?? "none")")
        case .alreadyExists(let key):
            return FHIRError(.conflict, code: "duplicate", "Resource \(key) already exists")
        case .conditionChanged:
            return FHIRError(.conflict, code: "conflict", "Concurrent writes changed the result of a conditional interaction; retry")
        case .recordExists(let kind, let id):
            return FHIRError(.conflict, code: "duplicate", "The \(kind) '\(id)' exists already")
        case .insufficientStorage(let message):
            // The numbers are the operators' (logged), not the client's.
            return FHIRError(.insufficientStorage, code: "no-store", "The document store has no room for this document now; try again later"
                             + " (incident \(Incident.report(message)))")
        case .streamRemoved:
            return FHIRError(.conflict, code: "timeout", "The document's upload stood idle so long that it was taken for abandoned and removed; send it again")
        case .storage(let message):
            return internalError(StoreError.storage(message))
        }
    }
}

extension FHIRError.Category {
    /// The status FHIR's RESTful API gives this kind of refusal (R4 http.html): the HTTP layer's
    /// response status, and `Bundle.entry.response.status` in batch and transaction responses,
    /// which FHIR defines in the same terms. The one table of numbers (ADR 018).
    public var restStatus: Int {
        switch self {
        case .invalid: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .notAllowed: 405
        case .notAcceptable: 406
        case .conflict: 409
        case .gone: 410
        case .preconditionFailed: 412
        case .tooCostly: 413
        case .unsupportedFormat: 415
        case .businessRule: 422
        case .tooManyRequests: 429
        case .internal: 500
        case .unsupported: 501
        case .insufficientStorage: 507
        }
    }

    /// The category of a RESTful status (an HTTP framework's own refusals, mapped back).
    public init(restStatus: Int) {
        self = Self.allCases.first { $0.restStatus == restStatus } ?? (restStatus >= 500 ? .internal : .invalid)
    }

    /// A failure of the server's rather than of the request.
    public var isServerFault: Bool { self == .internal || self == .unsupported || self == .insufficientStorage }
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
