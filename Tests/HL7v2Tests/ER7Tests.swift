import FHIRModel
@testable import HL7v2
import XCTest

final class ER7Tests: XCTestCase {
    static let adt = [
        "MSH|^~\\&|HIS|county-hospital|HUITONG|platform|20261124103000||ADT^A01^ADT_A01|MSG0001|P|2.4|||AL|NE||UNICODE UTF-8",
        "EVN|A01|20261124103000",
        "PID|1||M123^^^county-hospital^MR~110105194912310029^^^CHN^NNCHN||张^三^^^^^L||19491231|F|||建国路1号^^北京市^北京市^100022^CHN^H||^PRN^PH^^^^^^^^^13800138000",
        "PV1|1|I|ward-3^302^1^county-hospital||||D001^李^医生|||||||||||V20261124-01",
        "ZXT|custom|kept\\F\\as-is",
    ].joined(separator: "\r")

    func test_segmentsFieldsComponentsAndRepetitions() throws {
        let m = try ER7.parse(Self.adt)
        XCTAssertEqual(m.segments.map(\.id), ["MSH", "EVN", "PID", "PV1", "ZXT"])
        XCTAssertEqual(m.messageType.code, "ADT")
        XCTAssertEqual(m.messageType.event, "A01")
        XCTAssertEqual(m.messageType.structure, "ADT_A01")
        XCTAssertEqual(m.controlID, "MSG0001")
        XCTAssertEqual(m["MSH"]?[1].value, "|")
        XCTAssertEqual(m["MSH"]?[2].value, "^~\\&")
        XCTAssertEqual(m["MSH"]?[4].value, "county-hospital")
        XCTAssertEqual(m["MSH"]?[18].value, "UNICODE UTF-8")
        let pid = try XCTUnwrap(m["PID"])
        XCTAssertEqual(pid[3].each.count, 2, "PID-3 repeats")
        XCTAssertEqual(pid[3].component(1, repetition: 1), "110105194912310029")
        XCTAssertEqual(pid[3].component(5, repetition: 1), "NNCHN")
        XCTAssertEqual(pid[3].component(4), "county-hospital")
        XCTAssertEqual(pid[5].component(1), "张")
        XCTAssertEqual(pid[5].component(2), "三")
        XCTAssertEqual(pid[13].component(12), "13800138000")
        XCTAssertNil(pid[2].value, "an empty field")
        XCTAssertNil(pid[40].value, "a field past the end")
        XCTAssertEqual(m["ZXT"]?[2].value, "kept|as-is", "Z-segments are kept, escapes decoded")
    }

    func test_everyEscapeSequence() throws {
        let m = try ER7.parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X4142\\h\\XE5BCA0\\i\\H\\bold\\N\\")
        XCTAssertEqual(m["NTE"]?[3].value, "a|b^c&d~e\\f\ng" + "AB" + "h" + "张" + "ibold")
        // An escape without its closing character is kept as it was written.
        let open = try ER7.parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rNTE|1||50\\% off")
        XCTAssertEqual(open["NTE"]?[3].value, "50\\% off")
        // Writing escapes the delimiters again: the round trip is exact.
        let back = try ER7.parse(ER7.serialize(m))
        XCTAssertEqual(back["NTE"]?[3].value, m["NTE"]?[3].value)
    }

    func test_customDelimiters() throws {
        let m = try ER7.parse("MSH#$*@%#LAB#hospital#X#Y#20260101##ORU$R01#77#P#2.3\rPID#1##A1$$$hosp$MR*B2$$$x$PI##Wang$Wei%Jr\rNTE#1##x@F@y")
        XCTAssertEqual(m.delimiters.field, "#")
        XCTAssertEqual(m.messageType.event, "R01")
        XCTAssertEqual(m["PID"]?[3].each.count, 2)
        XCTAssertEqual(m["PID"]?[3].component(5, repetition: 1), "PI")
        XCTAssertEqual(m["PID"]?[5].subcomponent(2, 2), "Jr")
        XCTAssertEqual(m["NTE"]?[3].value, "x#y")
        XCTAssertEqual(try ER7.parse(ER7.serialize(m)), m)
    }

    func test_emptyAbsentAndDelete() throws {
        let m = try ER7.parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||X1||\"\"|||")
        let pid = try XCTUnwrap(m["PID"])
        XCTAssertTrue(pid[4].isEmpty)
        XCTAssertFalse(pid[4].isNull, "empty: not sent, keep what is stored")
        XCTAssertTrue(pid[5].isNull, "\"\": delete the stored value")
        XCTAssertTrue(pid[8].isEmpty)
    }

    func test_segmentTerminators_CR_LF_CRLF() throws {
        for sep in ["\r", "\n", "\r\n"] {
            let m = try ER7.parse(["MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5", "PID|1||X1", "PV1|1|O", ""].joined(separator: sep))
            XCTAssertEqual(m.segments.map(\.id), ["MSH", "PID", "PV1"], sep.debugDescription)
        }
    }

    func test_GB18030Names() throws {
        let text = "MSH|^~\\&|HIS|h|P|p|20260101||ADT^A04|9|P|2.4|||||CHN|GB 18030-2000\rPID|1||K9^^^h^MR||欧阳^娜娜~张^三"
        let bytes = Charset.gb18030.encode(text)
        XCTAssertEqual(Array(Charset.gb18030.encode("张三")), [0xD5, 0xC5, 0xC8, 0xFD])
        XCTAssertNil(String(validating: bytes, as: UTF8.self), "really GB 18030 bytes")
        let (decoded, charset) = try Charsets.text(of: bytes)
        XCTAssertEqual(charset, .gb18030)
        let m = try ER7.parse(decoded)
        XCTAssertEqual(m["PID"]?[5].component(1), "欧阳")
        XCTAssertEqual(m["PID"]?[5].component(2), "娜娜")
        XCTAssertEqual(m["PID"]?[5].component(1, repetition: 1), "张")
        // The same bytes with MSH-18 left empty (common in the field) are still read as GB 18030.
        let undeclared = Charset.gb18030.encode(text.replacingOccurrences(of: "GB 18030-2000", with: ""))
        let (again, used) = try Charsets.text(of: undeclared)
        XCTAssertEqual(used, .gb18030)
        XCTAssertEqual(try ER7.parse(again)["PID"]?[5].component(1), "欧阳")
    }

    /// Dates, times and ID numbers take ASCII digits only: 五 and ½ are numbers to Unicode, and an
    /// ID number or a date made of them is an AE, not a crash.
    func test_nonASCIIDigits_inDatesAndIDNumbers_areContentErrors() throws {
        let cases = [
            ("PID|1||M1^^^h^MR||张^三||1949123五|F", "PID"),
            ("PID|1||M1^^^h^MR~11010519491231002五^^^CHN^NNCHN||张^三||19491231|F", "PID"),
            ("PID|1||M1^^^h^MR||张^三||19491231|F\rPV1|1|I|w||||||||||||||||V1|||||||||||||||||||||||||2026112410½0", "PV1"),
            ("PID|1||M1^^^h^MR||张^三||1949123\u{0301}1|F", "PID"),
            ("PID|1||M1^^^h^MR||张^三||19491231|F\rPV1|1|I|w||||||||||||||||V1|||||||||||||||||||||||||202611241\u{0301}000", "PV1"),
            ("PID|1||M1^^^h^MR~11010519491231002\u{0301}X^^^CHN^NNCHN||张^三||19491231|F", "PID"),
        ]
        for (body, segment) in cases {
            let m = try ER7.parse("MSH|^~\\&|HIS|h|HUITONG|p|20261124103000||ADT^A01^ADT_A01|1|P|2.4\r" + body)
            XCTAssertThrowsError(try V2ToFHIR(facility: "h").bundle(for: m), body) { error in
                XCTAssertEqual((error as? HL7Problem)?.location?.segment, segment, body)
            }
        }
    }

    func test_notAMessage_isAParseError() {
        for bad in ["", "PID|1", "MSH", "MSH|^~", "MSH|||||", "MSH|^^\\&|A", "MSHA^~\\&|x", "MSH|^~\\&|A\rP|x", "MSH|^~\\&|A\rpid|1"] {
            XCTAssertThrowsError(try ER7.parse(bad), bad.debugDescription)
        }
        XCTAssertThrowsError(try Charsets.text(of: [0x4D, 0x53, 0x48] + Array("|^~\\&|||||||||||||UNICODE UTF-8\r".utf8) + [0xFF, 0xFE]))
    }

    /// Random and mutated messages: the parser returns or throws, never crashes or hangs, and
    /// what parses maps to FHIR or is refused with an HL7 error (what the gateway answers AA or AE).
    func test_fuzz_randomAndMutatedMessages() throws {
        var rng = SplitMix(seed: 20261124)
        let corpus = [Self.adt, "MSH|^~\\&|LAB|h|P|p|20260101||ORU^R01|5|P|2.5\rPID|1||A\rOBR|1||F1|GLU^Glucose|||20261124070000\r"
                      + "OBX|1|NM|GLU^Glucose||5.6|mmol/L|3.9-6.1|N|||F|||20261124080000+0800"]
        // With digits that are numbers to Unicode but not to `Int(_:)` (五, ½, and a combining
        // accent that joins the digit before it).
        let alphabet = Array("|^~\\&\r\n MSHPIDOBX0123456789AZaz\"XF.br张五½+-") + ["\u{0301}"]
        var mapped = 0
        var parsed = 0
        for i in 0..<10_000 {
            var chars = Array(corpus[i % corpus.count])
            let edits = 1 + Int(rng.next() % 8)
            for _ in 0..<edits {
                let at = Int(rng.next() % UInt64(max(chars.count, 1)))
                switch rng.next() % 4 {
                case 0 where !chars.isEmpty: chars.remove(at: min(at, chars.count - 1))
                case 1: chars.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: min(at, chars.count))
                case 2 where !chars.isEmpty: chars[min(at, chars.count - 1)] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                default: chars = Array(chars.prefix(at))
                }
            }
            if let m = try? ER7.parse(String(chars)) {
                parsed += 1
                // Cut by bytes as by Characters alike — except where a combining mark follows a
                // delimiter: a Character then holds both, while HL7 delimiters are code points (the
                // parser cuts there; the Character-based reference cannot).
                if !String(chars).unicodeScalars.contains("\u{0301}") {
                    XCTAssertEqual(m.segments, try ER7.segments(byCharacters: String(chars), m.delimiters), String(chars))
                }
                // Whatever parses also writes and parses back to the same segments.
                XCTAssertEqual(try ER7.parse(ER7.serialize(m)).segments.map(\.id), m.segments.map(\.id))
                if (try? V2ToFHIR(facility: "f").bundle(for: m)) != nil { mapped += 1 }
            }
        }
        XCTAssertGreaterThan(mapped, 100, "mutations that keep the content valid still map")
        for _ in 0..<5_000 {
            let bytes = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if let (text, _) = try? Charsets.text(of: bytes) { _ = try? ER7.parse(text) }
        }
        XCTAssertGreaterThan(parsed, 500, "mutations that keep MSH intact still parse")
    }
}


final class AcknowledgmentTests: XCTestCase {
    func test_ackAnswersTheSender_inChinaTime() throws {
        let m = try ER7.parse("MSH|^~\\&|HIS|county|HUITONG|platform|20260101||ORU^R01^ORU_R01|C-9|P|2.3.1")
        // 2026-02-28T16:30:05Z is 2026-03-01 00:30:05 in China; 2024-02-29T23:59:59Z is 2024-03-01 07:59:59.
        for (seconds, expected) in [(1_772_296_205.0, "20260301003005+0800"), (1_709_251_199.0, "20240301075959+0800"),
                                    (0.0, "19700101080000+0800")] {
            let ack = Acknowledgment.make(to: m["MSH"], code: "AE", problems: [HL7Problem(.error, "102", "bad", at: ("OBX", 3, 5))],
                                          now: Date(timeIntervalSince1970: seconds))
            XCTAssertEqual(ack["MSH"]?[7].value, expected)
            XCTAssertEqual(ack["MSH"]?[3].value, "HUITONG")
            XCTAssertEqual(ack["MSH"]?[5].value, "HIS")
            XCTAssertEqual(ack["MSH"]?[12].value, "2.3.1", "answered in the sender's version")
            XCTAssertEqual(ack["MSA"]?[2].value, "C-9")
            XCTAssertEqual(ack["ERR"]?[2].component(1), "OBX")
            XCTAssertEqual(ack["ERR"]?[3].component(3), "HL70357")
        }
    }

    /// The ACK's own control id fits MSH-10 as v2.3–2.5.1 define it (ST, 20 characters) and is
    /// new for every ACK.
    func test_ackControlIDs_areNew_andFitTheFieldLength() throws {
        let m = try ER7.parse("MSH|^~\\&|HIS|county|HUITONG|platform|20260101||ADT^A04^ADT_A01|C-9|P|2.4")
        let ids = (0..<500).map { _ in Acknowledgment.make(to: m["MSH"], code: "AA")["MSH"]?[10].value ?? "" }
        for id in ids {
            XCTAssertEqual(id.count, 20, id)
            XCTAssertTrue(id.allSatisfy { $0.isHexDigit }, id)
        }
        XCTAssertEqual(Set(ids).count, ids.count)
        XCTAssertGreaterThan(Set(ids.map(\.first)).count, 8, "the leading digit varies")
    }
}
