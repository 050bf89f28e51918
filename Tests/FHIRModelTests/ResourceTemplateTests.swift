import FHIRModel
import XCTest

final class ResourceTemplateTests: XCTestCase {
    func test_render_putsIdAndMetaFirst_andReplacesClientVersion() throws {
        let resource = try JSONParser.parse(#"{"gender":"male","meta":{"versionId":"99","tag":[{"code":"t"}]},"resourceType":"Patient","id":"old"}"#)
        let template = ResourceTemplate(resource: resource.objectValue!, type: "Patient", id: "p1")
        let t = FHIRDateTime.parse("2024-03-05T02:20:30.123Z", kind: .instant)!.low
        let out = String(decoding: template.render(version: 3, lastUpdated: t), as: UTF8.self)
        XCTAssertEqual(out, #"{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2024-03-05T02:20:30.123Z","tag":[{"code":"t"}]},"gender":"male"}"#)
    }
}
