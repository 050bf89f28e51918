import FHIRModel
import Foundation
import XCTest

/// The narrative rules (XHTMLNarrative) and the structural checks the official HL7 test material
/// exercises (`../shared/conformance/`, read here without a server).
final class NarrativeAndConformanceTests: XCTestCase {
    let validator = ResourceValidator()
    static let ns = #"xmlns=\"http://www.w3.org/1999/xhtml\""#

    func problems(_ div: String) throws -> [Issue] {
        validator.validate(try JSONParser.parse(#"{"resourceType":"Basic","code":{"text":"x"},"text":{"status":"generated","div":"\#(div)"}}"#))
    }

    func test_narratives_thatPagesCanShow_areAccepted() throws {
        for div in [
            #"<div \#(Self.ns)>张伟, 女, 45 岁</div>"#,
            #"<div \#(Self.ns)><p>血糖 &lt; 7 &amp; 血压 &#x2265; 140</p><table border=\"1\"><tr><td colspan=\"2\">HbA1c</td></tr></table></div>"#,
            ##"<div \##(Self.ns) xml:lang=\"zh-CN\"><a href=\"https://example.org/x\" name=\"top\">link</a><br/><img src=\"#photo\" alt=\"photo\"/></div>"##,
            #"<div \#(Self.ns)><!-- generated --><span style=\"color: red\">注意</span></div>"#,
        ] {
            XCTAssertEqual(try problems(div).map(\.diagnostics), [], div)
        }
    }

    func test_narratives_withActiveContentOrNonXMLEntities_areRefusedAtTheDiv() throws {
        let refused = [
            #"<div \#(Self.ns)><script>alert(1)</script>x</div>"#: "element <script>",
            #"<div \#(Self.ns)><SCRIPT>alert(1)</SCRIPT>x</div>"#: "element <SCRIPT>",
            #"<div \#(Self.ns)><p onclick=\"alert(1)\">x</p></div>"#: "event handler",
            #"<div \#(Self.ns)><a href=\"javascript:alert(1)\">x</a></div>"#: "active content",
            #"<div \#(Self.ns)><a href=\" jav&#x61;script:alert(1)\">x</a></div>"#: "active content",
            #"<div \#(Self.ns)><form><input/></form></div>"#: "element <form>",
            #"<div \#(Self.ns)><iframe src=\"https://evil\"></iframe>x</div>"#: "element <iframe>",
            #"<div \#(Self.ns)><span style=\"background:url(https://evil/x)\">x</span></div>"#: "must not load",
            #"<div \#(Self.ns)>&reg; 2024</div>"#: "entity '&reg;'",
            #"<div \#(Self.ns)>&nbsp;</div>"#: "entity '&nbsp;'",
            #"<div>no namespace</div>"#: "XHTML namespace",
            #"<div \#(Self.ns)>   </div>"#: "no content",
            #"<div \#(Self.ns)><p>unclosed</div>"#: "does not close",
            #"<div \#(Self.ns)>x</div><div \#(Self.ns)>y</div>"#: "nothing may follow",
            #"<p \#(Self.ns)>x</p>"#: "one XHTML <div>",
            #"<div \#(Self.ns)><p class=\"a\" class=\"b\">x</p></div>"#: "twice",
            #"<div \#(Self.ns)>"# + String(repeating: "<b>", count: 100) + "x" + String(repeating: "</b>", count: 100) + "</div>": "64 deep",
        ]
        for (div, expected) in refused {
            let issues = try problems(div)
            XCTAssertEqual(issues.count, 1, div)
            XCTAssertEqual(issues.first?.expression, ["Basic.text.div"], div)
            XCTAssertTrue(issues.first?.diagnostics.contains(expected) == true, "\(div): \(issues.first?.diagnostics ?? "accepted")")
        }
    }

    func test_idExtensions_duplicateBundleLinks_andAttachmentsThatContradictTheirData_areRefused() throws {
        let idExtension = #"{"resourceType":"Patient","id":"p1","_id":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}"#
        XCTAssertEqual(validator.validate(try JSONParser.parse(idExtension)).flatMap(\.expression), ["Patient.id"])
        let links = #"{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"http://a/1"},{"relation":"self","url":"http://a/2"}]}"#
        XCTAssertEqual(validator.validate(try JSONParser.parse(links)).flatMap(\.expression), ["Bundle.link[1].relation"])
        // "aGVsbG8gd29ybGQ=" is "hello world": 11 bytes, SHA-1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=.
        func attachment(_ extra: String) throws -> [String] {
            let media = #"{"resourceType":"Media","status":"completed","content":{"contentType":"text/plain","data":"aGVsbG8gd29ybGQ="\#(extra)}}"#
            return validator.validate(try JSONParser.parse(media)).flatMap(\.expression)
        }
        XCTAssertEqual(try attachment(#","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0=""#), [])
        XCTAssertEqual(try attachment(#","size":100"#), ["Media.content.size"])
        XCTAssertEqual(try attachment(#","hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=""#), ["Media.content.hash"])
    }

    /// Every official R4 example passes the structural validation, narratives included, but for one
    /// that is itself invalid: `bundle-questionnaire.json` nests Questionnaire items without their
    /// required `linkId` (cardinality 1..1 in R4).
    func test_theOfficialR4Examples_areValid() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/conformance/r4/examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertEqual(files.count, 72, "the official examples are at ../shared/conformance/r4/examples")
        for file in files {
            let json = try JSONParser.parse(Array(try Data(contentsOf: folder.appendingPathComponent(file))))
            let issues = validator.validate(json)
            if file == "bundle-questionnaire.json" {
                XCTAssertFalse(issues.isEmpty)
                XCTAssertTrue(issues.allSatisfy { $0.expression.first?.hasSuffix(".linkId") == true }, file)
                continue
            }
            XCTAssertEqual(issues.map { "\($0.expression.first ?? ""): \($0.diagnostics)" }, [], file)
        }
    }
}
