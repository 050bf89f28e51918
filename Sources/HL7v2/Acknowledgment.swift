import Foundation
import FHIRModel

/// Why a message is refused, in HL7 terms: the acknowledgment code (AE: the content is wrong; AR:
/// the message cannot be taken at all), an HL7 table 0357 error code, and where (`PID^1^3`).
public struct HL7Problem: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable { case error = "AE", reject = "AR" }

    public let code: Code
    /// HL7 table 0357: 100 segment sequence, 101 required field missing, 102 data type error,
    /// 103 table value not found, 200 unsupported message type, 201 unsupported event code,
    /// 203 unsupported version, 204 unknown key identifier, 207 application internal error.
    public let hl7Code: String
    public let text: String
    /// Segment id, its sequence among segments of that id (1-based), field number.
    public let location: (segment: String, sequence: Int, field: Int)?

    public init(_ code: Code, _ hl7Code: String, _ text: String, at location: (String, Int, Int)? = nil) {
        self.code = code
        self.hl7Code = hl7Code
        self.text = text
        self.location = location.map { (segment: $0.0, sequence: $0.1, field: $0.2) }
    }

    public var description: String {
        (location.map { "\($0.segment)-\($0.field): " } ?? "") + text
    }

    public static func == (a: HL7Problem, b: HL7Problem) -> Bool {
        a.code == b.code && a.hl7Code == b.hl7Code && a.text == b.text && a.location?.segment == b.location?.segment
            && a.location?.sequence == b.location?.sequence && a.location?.field == b.location?.field
    }

    static let codeNames = [
        "100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
        "103": "Table value not found", "200": "Unsupported message type", "201": "Unsupported event code",
        "202": "Unsupported processing id", "203": "Unsupported version id", "204": "Unknown key identifier",
        "205": "Duplicate key identifier", "206": "Application record locked", "207": "Application internal error",
    ]
}

public enum Acknowledgment {
    /// An original-mode ACK to `message` (its MSH fields, or what could be read of them).
    /// - Parameters:
    ///   - header: the received MSH (nil when even that was unreadable).
    ///   - problems: none for AA.
    public static func make(to header: HL7Segment?, code: String, problems: [HL7Problem] = [], text: String? = nil,
                            now: Date = Date(), controlID: String = newControlID()) -> HL7Message {
        let h = header ?? HL7Segment("MSH")
        var msh = HL7Segment("MSH")
        msh[1] = "|"
        msh[2] = "^~\\&"
        msh[3] = h[5]
        msh[4] = h[6]
        msh[5] = h[3]
        msh[6] = h[4]
        msh[7] = HL7Field(stringLiteral: timestamp(now))
        let event = h[9].component(2) ?? ""
        msh[9] = HL7Field(components: ["ACK", event, "ACK"])
        msh[10] = HL7Field(stringLiteral: controlID)
        msh[11] = h[11].isEmpty ? "P" : h[11]
        msh[12] = h[12].isEmpty ? "2.5" : HL7Field(stringLiteral: h[12].value ?? "2.5")
        if !h[18].isEmpty { msh[18] = h[18] }
        var msa = HL7Segment("MSA")
        msa[1] = HL7Field(stringLiteral: code)
        msa[2] = HL7Field(stringLiteral: h[10].value ?? "")
        if let t = text ?? problems.first?.text { msa[3] = HL7Field(stringLiteral: String(t.prefix(80))) }
        var segments = [msh, msa]
        for p in problems {
            var err = HL7Segment("ERR")
            if let l = p.location {
                // v2.3–2.4 ERR-1 (ELD) and v2.5 ERR-2 (ERL) both carry the location.
                err[1] = HL7Field(components: [l.segment, String(l.sequence), String(l.field), p.hl7Code])
                err[2] = HL7Field(components: [l.segment, String(l.sequence), String(l.field)])
            }
            err[3] = HL7Field(components: [p.hl7Code, HL7Problem.codeNames[p.hl7Code] ?? "", "HL70357"])
            err[4] = "E"
            err[8] = HL7Field(stringLiteral: p.text)
            segments.append(err)
        }
        return HL7Message(segments: segments)
    }

    /// A control id for an ACK of the platform's own: 80 random bits as 20 hexadecimal digits, the
    /// length MSH-10 (ST) has in v2.3 to v2.5.1, which strict receivers check.
    public static func newControlID() -> String {
        var rng = SystemRandomNumberGenerator()
        let high: UInt64 = rng.next(), low: UInt64 = rng.next()
        let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
        return String(decoding: (0..<20).map { i in
            let nibble = i < 16 ? high >> UInt64(60 - 4 * i) : low >> UInt64(60 - 4 * (i - 16))
            return digits[Int(nibble & 0xF)]
        }, as: UTF8.self)
    }

    /// `YYYYMMDDHHMMSS+0800` (China Standard Time, no daylight saving), by arithmetic: a
    /// Calendar per ACK costs more than the rest of the ACK.
    static func timestamp(_ date: Date) -> String {
        FHIRDateTime.compactTimestamp(seconds: Int(date.timeIntervalSince1970.rounded(.down)), offsetHours: 8) + "+0800"
    }
}
