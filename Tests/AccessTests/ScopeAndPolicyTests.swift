@testable import Access
import XCTest

final class ScopeAndPolicyTests: XCTestCase {
    func test_scopes_parseV2LettersAndV1Forms_andRejectTheRest() {
        XCTAssertEqual(SMARTScope("system/Observation.rs"), SMARTScope(.system, "Observation", [.read, .search]))
        XCTAssertEqual(SMARTScope("user/*.cruds")?.permissions, .all)
        XCTAssertEqual(SMARTScope("patient/*.read")?.permissions, [.read, .search])
        XCTAssertEqual(SMARTScope("system/Patient.write")?.permissions, [.create, .update, .delete])
        XCTAssertEqual(SMARTScope("system/Patient.*")?.permissions, .all)
        for bad in ["openid", "launch/patient", "system/Observation.sr", "system/Observation.rr", "system/.rs", "admin/Patient.rs",
                    "system/Observation.rs?category=laboratory", "system/Observation.", "system/Obs-ervation.r"] {
            XCTAssertNil(SMARTScope(bad), bad)
        }
        XCTAssertEqual(SMARTScope.format(SMARTScope.parseList("system/Patient.read openid system/Observation.cruds")),
                       "system/Patient.rs system/Observation.cruds")
    }

    func test_covers_needsSameContextTypeOrWildcard_andMorePermissions() {
        let wide = SMARTScope("system/*.cruds")!
        XCTAssertTrue(wide.covers(SMARTScope("system/Observation.rs")!))
        XCTAssertFalse(wide.covers(SMARTScope("user/Observation.rs")!))
        XCTAssertFalse(SMARTScope("system/Observation.rs")!.covers(SMARTScope("system/Observation.cr")!))
        XCTAssertFalse(SMARTScope("system/Observation.rs")!.covers(SMARTScope("system/*.r")!))
    }

    func principal(_ scopes: String, role: Role = .facilitySystem) -> Principal {
        Principal(kind: .client, subject: "c", role: role, scopes: SMARTScope.parseList(scopes))
    }

    func test_policy_grantsWhatTheScopesSay_perInteraction() throws {
        let policy = AccessPolicy()
        let reader = principal("system/Observation.rs system/Patient.r")
        XCTAssertNoThrow(try policy.authorize(reader, .read, "Observation"))
        XCTAssertNoThrow(try policy.authorize(reader, .search, "Observation"))
        XCTAssertNoThrow(try policy.authorize(reader, .read, "Patient"))
        XCTAssertThrowsError(try policy.authorize(reader, .search, "Patient"))
        XCTAssertThrowsError(try policy.authorize(reader, .create, "Observation"))
        XCTAssertThrowsError(try policy.authorize(reader, .read, "Condition"))
        XCTAssertThrowsError(try policy.authorize(reader, .systemHistory, nil))
        // Conditional interactions need the search as well as the write.
        let writer = principal("system/Observation.cud")
        XCTAssertNoThrow(try policy.authorize(writer, .update, "Observation"))
        XCTAssertThrowsError(try policy.authorize(writer, .conditionalUpdate, "Observation"))
        XCTAssertNoThrow(try policy.authorize(principal("system/Observation.cruds"), .conditionalUpdate, "Observation"))
        // An operation nobody listed is closed.
        XCTAssertThrowsError(try policy.authorize(principal("system/*.rs"), .operation("new-operation"), "Patient"))
        XCTAssertNoThrow(try policy.authorize(principal("system/*.rs"), .operation("everything"), "Patient"))
        XCTAssertTrue(policy.mayRead(reader, "Patient"))
        XCTAssertFalse(policy.mayRead(reader, "Condition"))
        XCTAssertFalse(policy.mayRead(.nobody, "Patient"))
    }

    func test_reviewDecisions_needAStewardRole_evenWithWideScopes() {
        let policy = AccessPolicy()
        XCTAssertThrowsError(try policy.authorize(principal("system/*.cruds"), .operation("empi-merge"), "Person")) { error in
            XCTAssertTrue((error as? AccessDenied)?.reason.contains("reviewers") ?? false)
        }
        XCTAssertNoThrow(try policy.authorize(principal("system/*.cruds", role: .platformOperator), .operation("empi-merge"), "Person"))
        XCTAssertNoThrow(try policy.authorize(.development, .operation("empi-link"), "Person"))
    }
}
