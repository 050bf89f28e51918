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

    /// XML allows space around `=` and line breaks in the declaration; ASCII and ISO 8859-1 are read
    /// as they were before; a CDATA section whose GB character ends in the byte of `]` is read whole.
    func test_declarationSpellingsLatin1AndCDATA() throws {
        let spaced = document(encoding: "GBK").replacingOccurrences(of: "encoding=", with: "encoding =\n")
        let gb = try XCTUnwrap(("\n" + spaced).data(using: XMLHeaderReader.gb18030Encoding)).map { $0 }
        XCTAssertEqual(try CDAHeader(gb).title, "出院小结")
        XCTAssertEqual(try CDAHeader(Array(document(encoding: "US-ASCII").replacingOccurrences(of: "出院小结", with: "Discharge").utf8)).title,
                       "Discharge")
        let latin = document(encoding: "ISO-8859-1").replacingOccurrences(of: "<title>出院小结</title>", with: "<title>Résumé</title>")
        let latinBytes = try XCTUnwrap(latin.replacingOccurrences(of: "出院小结", with: "x").replacingOccurrences(of: "钱琳", with: "x")
            .replacingOccurrences(of: "县人民医院", with: "x").replacingOccurrences(of: "病案室", with: "x")
            .replacingOccurrences(of: "住院经过：好转出院。", with: "x").data(using: .isoLatin1)).map { $0 }
        XCTAssertEqual(try CDAHeader(latinBytes).title, "Résumé")
        // 0x81 0x5D is one GB 18030 character; `]>` after it is text, not the end of the section.
        var cdata = try XCTUnwrap(document(encoding: "GB18030").replacingOccurrences(of: "<title>出院小结</title>", with: "<title>@@</title>")
            .data(using: XMLHeaderReader.gb18030Encoding)).map { $0 }
        let at = try XCTUnwrap(cdata.firstRange(of: Array("@@".utf8)))
        cdata.replaceSubrange(at, with: Array("<![CDATA[".utf8) + [0x81, 0x5D] + Array("]>x]]>".utf8))
        let title = try XCTUnwrap(try CDAHeader(cdata).title)
        XCTAssertTrue(title.hasSuffix("]>x") && title.count == 4, title)
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
        // A UTF-8 byte order mark before a GB declaration: the two disagree.
        let bom = [0xEF, 0xBB, 0xBF] + Array(document(encoding: "GBK").utf8)
        XCTAssertThrowsError(try CDAHeader(bom))
    }
}
