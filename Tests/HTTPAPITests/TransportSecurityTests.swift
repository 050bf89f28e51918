@testable import Access
import FHIRModel
import Foundation
import HTTPAPI
import HTTPTypes
import XCTest

/// Security headers on every response (a content security policy on HTML), and rate limits on the
/// authentication endpoints per address and on the FHIR API per client.
final class TransportSecurityTests: XCTestCase {
    func test_everyResponseCarriesSecurityHeaders_andHTMLACSP() async throws {
        try await TestServer.run { server, _ in
            let page = try await server.request(.get, "/")
            XCTAssertTrue(page.header("Content-Type")?.hasPrefix("text/html") ?? false)
            XCTAssertEqual(page.header("Content-Security-Policy"), "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
            for path in ["/", "/fhir/metadata", "/fhir/Patient/nope", "/no-such-route"] {
                let r = try await server.request(.get, path)
                XCTAssertEqual(r.header("X-Content-Type-Options"), "nosniff", path)
                XCTAssertEqual(r.header("X-Frame-Options"), "DENY", path)
                XCTAssertEqual(r.header("Referrer-Policy"), "no-referrer", path)
                XCTAssertNil(r.header("Strict-Transport-Security"), "no HSTS over plain HTTP (\(path))")
            }
        }
    }

    func test_authenticationEndpoints_areRateLimitedPerAddress() async throws {
        try await TestServer.run(development: false, rateLimits: RateLimits(authPerAddress: 1)) { server, _ in
            var statuses: [Int] = []
            for _ in 0..<25 {
                let r = try await server.request(.post, "/auth/token", "grant_type=client_credentials&client_id=guess&client_secret=guess",
                                                 headers: ["Content-Type": "application/x-www-form-urlencoded"])
                statuses.append(r.status)
                if r.status == 429 {
                    XCTAssertNotNil(r.header("Retry-After").flatMap(Int.init))
                    XCTAssertEqual(r.json["resourceType"]?.stringValue, "OperationOutcome")
                }
            }
            XCTAssertEqual(statuses.prefix(20).filter { $0 == 429 }.count, 0, "a burst of 20 is allowed")
            XCTAssertEqual(statuses.suffix(5), [429, 429, 429, 429, 429], "then one a second")
        }
    }

    func test_fhirRequests_areRateLimitedPerClient() async throws {
        try await TestServer.run(development: false, rateLimits: RateLimits(perClient: 2)) { server, store in
            let one = try await token(server, store, scopes: "system/*.rs")
            let other = try await token(server, store, scopes: "system/*.rs")
            var statuses: [Int] = []
            for _ in 0..<6 { statuses.append(try await server.request(.get, "/fhir/Patient", headers: bearer(one)).status) }
            XCTAssertEqual(statuses, [200, 200, 200, 200, 429, 429])
            let unaffected = try await server.request(.get, "/fhir/Patient", headers: bearer(other)).status
            XCTAssertEqual(unaffected, 200, "each client has its own allowance")
        }
    }
}
