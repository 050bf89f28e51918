import Foundation
import Store
import StorePostgres

/// The storage backends the store and HTTP tests run against: SQLite always, PostgreSQL when
/// `HUITONG_TEST_POSTGRES_URL` names a server (each run gets its own schema, dropped after).
public enum TestBackend: String, Sendable, CaseIterable {
    case sqlite
    case postgres

    public static var postgresURL: String? {
        ProcessInfo.processInfo.environment["HUITONG_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// SQLite, and PostgreSQL when configured.
    public static var available: [TestBackend] {
        postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    /// A new, empty store of this backend; `location` reopens the same data (`reopen`).
    public func openEmpty() async throws -> TestStore {
        let location: String
        switch self {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("huitong-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            location = dir.path
        case .postgres:
            location = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        }
        return TestStore(backend: self, location: location, store: try await open(location, create: true))
    }

    func open(_ location: String, create: Bool = false) async throws -> any ResourceStore {
        switch self {
        case .sqlite:
            return try await SQLiteStore.open(path: (location as NSString).appendingPathComponent("db.sqlite"))
        case .postgres:
            guard let url = Self.postgresURL else { throw TestBackendError.notConfigured }
            return try await PostgresStore.open(url: url, searchPath: location, createSchema: create, maxConnections: 8)
        }
    }
}

public enum TestBackendError: Error { case notConfigured }

/// An open test store and where its data lives.
public struct TestStore: Sendable {
    public let backend: TestBackend
    public let location: String
    public let store: any ResourceStore

    /// Opens the same data again (after `store` was closed): a restart.
    public func reopen() async throws -> any ResourceStore {
        try await backend.open(location)
    }

    /// Closes the store (if still open) and removes its data.
    public func destroy() async {
        try? await store.close()
        switch backend {
        case .sqlite:
            try? FileManager.default.removeItem(atPath: location)
        case .postgres:
            if let url = TestBackend.postgresURL { try? await PostgresStore.dropSchema(url: url, location) }
        }
    }
}

/// Runs `body` once per available backend, each time on a new empty store, removed afterwards.
/// The backend's name goes to the log first, so a failure's output shows which one failed.
public func withEachBackend(_ body: (TestStore) async throws -> Void) async throws {
    for backend in TestBackend.available {
        print("[store backend: \(backend.rawValue)]")
        let test = try await backend.openEmpty()
        do {
            try await body(test)
        } catch {
            await test.destroy()
            throw BackendFailure(backend: backend, error: error)
        }
        await test.destroy()
    }
}

/// An error from a test body, with the backend it ran on.
public struct BackendFailure: Error, CustomStringConvertible {
    public let backend: TestBackend
    public let error: any Error
    public var description: String { "[\(backend.rawValue)] \(error)" }
}

extension TestStore {
    /// Makes document streams look last written `seconds` ago (the sweep's idle test).
    public func backdateStreams(_ ids: [String], seconds: Int) async throws {
        switch backend {
        case .sqlite:
            let content = (location as NSString).appendingPathComponent("db.sqlite-content")
            let past = Date(timeIntervalSinceNow: -Double(seconds))
            for id in ids {
                let path = "\(content)/streams/\(id.prefix(2))/\(id)"
                if FileManager.default.fileExists(atPath: path) {
                    try FileManager.default.setAttributes([.modificationDate: past], ofItemAtPath: path)
                }
            }
        case .postgres:
            let list = ids.map { "'\($0)'" }.joined(separator: ", ")
            try await PostgresStore.execute(url: TestBackend.postgresURL!, "UPDATE \(location).document_stream_pending"
                                            + " SET touched_at = now() - make_interval(secs => \(seconds)) WHERE id IN (\(list))")
        }
    }
}
