@testable import Access
import FHIRModel
import XCTest

final class ConsentEvaluatorTests: XCTestCase {
    func consent(_ provision: String, status: String = "active") throws -> JSONObject {
        let text = #"{"resourceType":"Consent","status":"\#(status)","scope":{"coding":[{"code":"patient-privacy"}]},"provision":\#(provision)}"#
        guard case .object(let o) = try JSONParser.parse(text) else { throw XCTSkip("not an object") }
        return o
    }

    let now = FHIRDateTime.parse("2026-06-01T00:00:00Z", kind: .dateTime)!.low

    func test_denyAll_permitOne_periods_andInactiveConsents() throws {
        let denyAll = try consent(#"{"type":"deny"}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([denyAll], facility: "b", now: now), .deny)
        let exceptB = try consent(#"{"type":"deny","provision":[{"type":"permit","actor":[{"reference":{"reference":"Organization/b"}}]}]}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([exceptB], facility: "b", now: now), .permit)
        XCTAssertEqual(ConsentEvaluator.verdict([exceptB], facility: "c", now: now), .deny)
        let onlyDenyC = try consent(#"{"type":"permit","provision":[{"type":"deny","actor":[{"reference":{"reference":"Organization/c"}}]}]}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([onlyDenyC], facility: "c", now: now), .deny)
        XCTAssertEqual(ConsentEvaluator.verdict([onlyDenyC], facility: "b", now: now), .permit)
        // A refusal limited in time applies only inside its period.
        let lastYear = try consent(#"{"type":"deny","period":{"start":"2025-01-01","end":"2025-12-31"}}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([lastYear], facility: "b", now: now), .none)
        let fromNow = try consent(#"{"type":"deny","period":{"start":"2026-05-01"}}"#)
        XCTAssertEqual(ConsentEvaluator.verdict([fromNow], facility: "b", now: now), .deny)
        // Revoked (inactive) consents say nothing; across consents a refusal wins.
        XCTAssertEqual(ConsentEvaluator.verdict([try consent(#"{"type":"deny"}"#, status: "inactive")], facility: "b", now: now), .none)
        XCTAssertEqual(ConsentEvaluator.verdict([exceptB, denyAll], facility: "b", now: now), .deny)
    }
}
