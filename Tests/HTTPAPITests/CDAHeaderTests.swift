import Foundation
import XCTest

@testable import Sharing

/// Chinese hospital systems often write their CDA documents in GB 18030 (or GBK, GB 2312) and say
/// so in the XML declaration: the header is read in the declared encoding.
final class CDAHeaderTests: XCTestCase {
    func document(encoding: String) -> String {
        """
        <?xml version="1.0" encoding="\(encoding)"?>
        <ClinicalDocument xmlns="urn:hl7-org:v3">
          <id root="2.16.156.10011.1.1" extension="DOC-1"/>
          <code code="18842-5" codeSystem="2.16.840.1.113883.6.1" displayName="出院小结"/>
          <title>出院小结</title>
          <effectiveTime value="20261201093000"/>
          <recordTarget><patientRole><id root="2.16.156.10011.1.3" extension="510104196606066612"/>
            <patient><name>钱琳</name></patient></patientRole></recordTarget>
          <custodian><assignedCustodian><representedCustodianOrganization><id root="2.16.156.10011.1.5" extension="org-a"/>
            <name>县人民医院 &amp; 病案室</name></representedCustodianOrganization></assignedCustodian></custodian>
          <component><structuredBody><component><section><text>住院经过：好转出院。</text></section></component></structuredBody></component>
        </ClinicalDocument>
        """
    }

    func test_headerReadInTheDeclaredGBEncoding() throws {
        for name in ["GB18030", "GBK", "gb2312"] {
            let bytes = try XCTUnwrap(document(encoding: name).data(using: XMLHeaderReader.gb18030Encoding)).map { $0 }
            XCTAssertNil(String(validating: bytes, as: UTF8.self), "the bytes are not UTF-8")
            let header = try CDAHeader(bytes)
            XCTAssertEqual(header.title, "出院小结", name)
            XCTAssertEqual(header.type?.display, "出院小结", name)
            XCTAssertEqual(header.patientName, "钱琳", name)
            XCTAssertEqual(header.custodian?.name, "县人民医院 & 病案室", name)
            XCTAssertEqual(header.patientIDs.first?.extension, "510104196606066612", name)
        }
        // UTF-8 as before, declared or not.
        XCTAssertEqual(try CDAHeader(Array(document(encoding: "UTF-8").utf8)).title, "出院小结")
    }

    func test_otherEncodingsAndMismatchesAreRefusedByName() throws {
        XCTAssertThrowsError(try CDAHeader(Array(document(encoding: "ISO-8859-5").utf8))) { error in
            XCTAssertTrue((error as? XMLHeaderReader.Malformed)?.message.contains("ISO-8859-5") == true, "\(error)")
        }
        // Declared UTF-8, written in GB 18030.
        let gb = try XCTUnwrap(document(encoding: "UTF-8").data(using: XMLHeaderReader.gb18030Encoding)).map { $0 }
        XCTAssertThrowsError(try CDAHeader(gb)) { error in
            XCTAssertEqual((error as? XMLHeaderReader.Malformed)?.message, "text is not UTF-8")
        }
    }
}
