import Store
import StoreTestSupport
import XCTest

/// Says loudly whether the PostgreSQL variants of the store and HTTP tests ran.
final class BackendAvailabilityTests: XCTestCase {
    func test_postgresVariants_runWhenConfigured_elseSkippedLoudly() async throws {
        guard TestBackend.postgresURL != nil else {
            throw XCTSkip("HUITONG_TEST_POSTGRES_URL is not set: the store and HTTP tests ran on SQLite only, "
                          + "their PostgreSQL variants were skipped (.ci/run sets it)")
        }
        // Configured: it must also be reachable, or every PostgreSQL variant would fail confusingly.
        let test = try await TestBackend.postgres.openEmpty()
        let version = try await test.store.schemaVersion()
        XCTAssertGreaterThan(version, 0)
        await test.destroy()
    }
}
