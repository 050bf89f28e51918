import Foundation

/// Character sets of HL7 v2 messages (MSH-18). Chinese hospital systems commonly send GB 18030 or
/// GBK, often without saying so in MSH-18; bytes that are not valid UTF-8 are then read as GB 18030
/// (a superset of GBK and GB 2312).
public enum Charset: String, Sendable {
    case ascii, utf8, gb18030, latin1

    /// Foundation's GB 18030 encoding (decodes GBK and GB 2312 as well).
    static let gb18030Encoding = String.Encoding(rawValue: 0x8000_0632)

    /// The charset MSH-18 names (HL7 table 0211 and the names seen in the field); nil if unknown.
    public init?(msh18 value: String) {
        let v = value.uppercased().replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "")
        switch v {
        case "", "ASCII", "USASCII": self = .ascii
        case "UNICODEUTF8", "UTF8", "UNICODE": self = .utf8
        case "GB18030", "GB180302000", "GBK", "GB2312", "CP936", "ISOIR58", "GB23121980": self = .gb18030
        case "8859/1", "88591", "ISO88591", "LATIN1": self = .latin1
        default: return nil
        }
    }

    /// The MSH-18 value written on answers in this charset.
    public var msh18: String {
        switch self {
        case .ascii: return ""
        case .utf8: return "UNICODE UTF-8"
        case .gb18030: return "GB 18030-2000"
        case .latin1: return "8859/1"
        }
    }

    public func decode(_ bytes: [UInt8]) -> String? { Charsets.decode(bytes, charset: self) }
    public func encode(_ text: String) -> [UInt8] { Charsets.encode(text, charset: self) }
}

public enum Charsets {
    public static func decode(_ bytes: [UInt8], charset: Charset) -> String? {
        switch charset {
        case .ascii, .utf8:
            // ASCII declared but UTF-8 or GB 18030 sent is common; UTF-8 is tried first.
            if let s = String(validating: bytes, as: UTF8.self) { return s }
            return charset == .ascii ? decode(bytes, charset: .gb18030) : nil
        case .gb18030:
            return String(data: Data(bytes), encoding: Charset.gb18030Encoding)
        case .latin1:
            return String(bytes.map { Character(Unicode.Scalar($0)) })
        }
    }

    public static func encode(_ text: String, charset: Charset) -> [UInt8] {
        switch charset {
        case .ascii, .utf8: return Array(text.utf8)
        case .gb18030: return text.data(using: Charset.gb18030Encoding).map { [UInt8]($0) } ?? Array(text.utf8)
        case .latin1: return text.unicodeScalars.map { $0.value < 256 ? UInt8($0.value) : UInt8(ascii: "?") }
        }
    }

    /// MSH-18 read from the raw bytes (delimiters and MSH are ASCII in every charset HL7 allows).
    public static func declared(in bytes: [UInt8]) -> String? {
        guard bytes.count > 8, bytes[0] == UInt8(ascii: "M"), bytes[1] == UInt8(ascii: "S"), bytes[2] == UInt8(ascii: "H") else { return nil }
        let separator = bytes[3]
        var field = 1
        var start = 4
        for i in 4..<bytes.count {
            let b = bytes[i]
            if b == 0x0D || b == 0x0A { return field == 18 ? String(decoding: bytes[start..<i], as: UTF8.self) : nil }
            if b == separator {
                if field == 18 { return String(decoding: bytes[start..<i], as: UTF8.self) }
                field += 1
                start = i + 1
            }
        }
        return field == 18 ? String(decoding: bytes[start...], as: UTF8.self) : nil
    }

    /// A message's bytes as text, in the charset MSH-18 declares (the first repetition; unknown
    /// names fall back to detection), and the charset used.
    public static func text(of bytes: [UInt8]) throws(HL7ParseError) -> (String, Charset) {
        let name = declared(in: bytes).map { $0.split(separator: "~").first.map(String.init) ?? "" } ?? ""
        let charset = Charset(msh18: name) ?? .ascii
        if let s = decode(bytes, charset: charset) {
            // Declared UTF-8/ASCII but not decodable as such: GB 18030 was sent (see decode).
            let used: Charset = charset == .ascii && String(validating: bytes, as: UTF8.self) == nil ? .gb18030 : charset
            return (s, used)
        }
        throw HL7ParseError("The message is not valid \(charset == .utf8 ? "UTF-8" : charset.rawValue) as MSH-18 ('\(name)') declares")
    }
}
