@testable import Access
import FHIRModel
import Foundation
import HTTPTypes
import Store
import XCTest

/// People log in with password and TOTP; wrong attempts lock the account; sessions end after idle
/// or absolute timeouts; refresh and logout.
final class LoginTests: XCTestCase {
    func test_loginNeedsBothFactors_locksAfterFailures_andSessionsRefreshAndEnd() async throws {
        try await TestServer.run(development: false) { server, store in
            let created = try await UserDirectory.create(username: "dr.li", role: .clinician, facility: "org-a",
                                                         scopes: "user/Patient.rs", in: store)
            let secret = try XCTUnwrap(Base32.decode(created.account.totpSecret))
            func code(_ offset: Int64 = 0) -> String { TOTP.code(secret: secret, counter: Int64(Date().timeIntervalSince1970) / 30 + offset) }
            func login(_ password: String, _ totp: String) async throws -> FHIRTestResponse {
                try await server.request(.post, "/auth/login", "username=dr.li&password=\(password)&totp=\(totp)",
                                         headers: ["Content-Type": "application/x-www-form-urlencoded"])
            }
            let noCode = try await login(created.password, "000000")
            XCTAssertEqual(noCode.status, 401)
            let wrongPassword = try await login("guess", code())
            XCTAssertEqual(wrongPassword.status, 401)
            // One code for the login and its replay: computed twice, they differ across a 30 s boundary.
            let once = code()
            let ok = try await login(created.password, once)
            XCTAssertEqual(ok.status, 200, ok.bodyText)
            let access = try XCTUnwrap(ok.json["access_token"]?.stringValue)
            let refresh = try XCTUnwrap(ok.json["refresh_token"]?.stringValue)
            let read = try await server.request(.get, "/fhir/Patient", headers: ["Authorization": "Bearer \(access)"])
            XCTAssertEqual(read.status, 200)
            let replayed = try await login(created.password, once)
            XCTAssertEqual(replayed.status, 401, "the same one-time code twice")
            // The session gives new access tokens until logout.
            let form = ["Content-Type": "application/x-www-form-urlencoded"]
            let renewed = try await server.request(.post, "/auth/token", "grant_type=refresh_token&refresh_token=\(refresh)", headers: form)
            XCTAssertEqual(renewed.status, 200, renewed.bodyText)
            XCTAssertNotNil(renewed.json["access_token"]?.stringValue)
            _ = try await server.request(.post, "/auth/logout", "refresh_token=\(refresh)", headers: form)
            let ended = try await server.request(.post, "/auth/token", "grant_type=refresh_token&refresh_token=\(refresh)", headers: form)
            XCTAssertEqual(ended.status, 400)
            XCTAssertEqual(ended.json["error"]?.stringValue, "invalid_grant")
            // Five failures lock the account: then even the right factors are refused.
            for _ in 0..<UserDirectory.maxFailures { _ = try await login("guess", "123456") }
            let locked = try await login(created.password, code(1))
            XCTAssertEqual(locked.status, 401)
            XCTAssertTrue(locked.json["error_description"]?.stringValue?.contains("locked") ?? false, locked.bodyText)
            // Logins, failed and not, are in the audit trail.
            let report = try await store.verifyAuditChain(progress: { _ in })
            XCTAssertNil(report.broken)
            let events = try await store.auditEvents(patients: [], before: nil, limit: 100)
            let logins = events.filter { String(decoding: $0.content, as: UTF8.self).contains(#""op":"login""#) }
            XCTAssertEqual(logins.count, 10)
        }
    }

    func test_sessions_endAfterIdleAndAbsoluteTimeouts() async throws {
        try await withEachBackendTokens { directory, store in
            let created = try await UserDirectory.create(username: "cdc.wang", role: .cdcStaff, facility: "cdc", scopes: "user/Observation.rs", in: store)
            let secret = try XCTUnwrap(Base32.decode(created.account.totpSecret))
            let start = Date()
            let login = try await directory.login(username: "cdc.wang", password: created.password,
                                                  totp: TOTP.code(secret: secret, counter: Int64(start.timeIntervalSince1970) / 30), now: start)
            let refresh = try XCTUnwrap(login["refresh_token"] as? String)
            // Used every 20 minutes: alive; after 8 hours: over, however active.
            var t = start
            for _ in 0..<20 {
                t = t.addingTimeInterval(20 * 60)
                if t.timeIntervalSince(start) >= UserDirectory.absoluteTimeout { break }
                _ = try await directory.refresh(refresh, now: t)
            }
            do {
                _ = try await directory.refresh(refresh, now: start.addingTimeInterval(UserDirectory.absoluteTimeout + 60))
                XCTFail("a session outlived its absolute timeout")
            } catch let error as OAuthError { XCTAssertEqual(error.error, "invalid_grant") }
            // Idle for more than 30 minutes: over.
            let second = try await directory.login(username: "cdc.wang", password: created.password,
                                                   totp: TOTP.code(secret: secret, counter: Int64(start.timeIntervalSince1970) / 30 + 1),
                                                   now: start.addingTimeInterval(30))
            let idle = try XCTUnwrap(second["refresh_token"] as? String)
            do {
                _ = try await directory.refresh(idle, now: start.addingTimeInterval(30 + UserDirectory.idleTimeout + 1))
                XCTFail("a session outlived its idle timeout")
            } catch let error as OAuthError { XCTAssertTrue(error.description.contains("without use")) }
        }
    }
}

/// A user directory over each backend's empty store, with a fresh token key.
func withEachBackendTokens(_ body: @escaping @Sendable (UserDirectory, any ResourceStore) async throws -> Void) async throws {
    try await TestServer.run(development: false) { server, store in
        try await body(UserDirectory(store: store, tokens: server.tokens), store)
    }
}
