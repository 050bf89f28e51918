import FHIRModel
import Foundation

/// HL7 v2 ER7 ("pipe and hat") messages: segments of fields, each field repetitions of components
/// of sub-components. Delimiters come from MSH-1/MSH-2; values are kept unescaped.
///
/// Field numbers are HL7's: `segment[3]` is PID-3. In MSH, field 1 is the field separator and
/// field 2 the encoding characters, as the standard counts them.
public struct HL7Message: Sendable, Equatable {
    public var delimiters: HL7Delimiters
    public var segments: [HL7Segment]

    public init(delimiters: HL7Delimiters = .standard, segments: [HL7Segment]) {
        self.delimiters = delimiters
        self.segments = segments
    }

    /// The first segment with this id.
    public subscript(_ id: String) -> HL7Segment? { segments.first { $0.id == id } }

    /// Every segment with this id, in order.
    public func all(_ id: String) -> [HL7Segment] { segments.filter { $0.id == id } }

    /// MSH-9: message code, trigger event, structure (`ADT`, `A01`, `ADT_A01`).
    public var messageType: (code: String, event: String, structure: String) {
        let f = self["MSH"]?[9]
        return (f?.component(1) ?? "", f?.component(2) ?? "", f?.component(3) ?? "")
    }

    /// MSH-10.
    public var controlID: String { self["MSH"]?[10].value ?? "" }
}

public struct HL7Delimiters: Sendable, Equatable {
    public var field: Character
    public var component: Character
    public var repetition: Character
    public var escape: Character
    public var subcomponent: Character

    public static let standard = HL7Delimiters(field: "|", component: "^", repetition: "~", escape: "\\", subcomponent: "&")

    public init(field: Character, component: Character, repetition: Character, escape: Character, subcomponent: Character) {
        self.field = field
        self.component = component
        self.repetition = repetition
        self.escape = escape
        self.subcomponent = subcomponent
    }

    /// MSH-2 as written.
    public var encodingCharacters: String { String([component, repetition, escape, subcomponent]) }
}

public struct HL7Segment: Sendable, Equatable {
    public var id: String
    /// Fields 1...n (index 0 of the array is field 1).
    public var fields: [HL7Field]

    public init(_ id: String, _ fields: [HL7Field] = []) {
        self.id = id
        self.fields = fields
    }

    /// Field `n` (1-based, as HL7 counts); an absent field is empty.
    public subscript(_ n: Int) -> HL7Field {
        get { n >= 1 && n <= fields.count ? fields[n - 1] : HL7Field() }
        set {
            guard n >= 1 else { return }
            while fields.count < n { fields.append(HL7Field()) }
            fields[n - 1] = newValue
        }
    }
}

/// A field: its repetitions, each a list of components, each a list of sub-components.
public struct HL7Field: Sendable, Equatable, ExpressibleByStringLiteral {
    public var repetitions: [[[String]]]

    public init(repetitions: [[[String]]] = []) {
        self.repetitions = repetitions
    }

    public init(stringLiteral value: String) {
        self.repetitions = value.isEmpty ? [] : [[[value]]]
    }

    /// Components of one repetition (`^`-separated), each without sub-components.
    public init(components: [String]) {
        self.repetitions = [components.map { [$0] }]
    }

    public var isEmpty: Bool { repetitions.allSatisfy { $0.allSatisfy { $0.allSatisfy(\.isEmpty) } } }

    /// `""`: the sender says the value is to be deleted (null), not merely absent.
    public var isNull: Bool { value == "\"\"" }

    /// The first repetition's first component's first sub-component (nil when empty).
    public var value: String? { component(1) }

    /// Component `n` (1-based) of repetition `repetition` (0-based), its first sub-component.
    public func component(_ n: Int, repetition: Int = 0) -> String? {
        subcomponent(n, 1, repetition: repetition)
    }

    public func subcomponent(_ component: Int, _ sub: Int, repetition: Int = 0) -> String? {
        guard repetition < repetitions.count, component >= 1, component <= repetitions[repetition].count else { return nil }
        let subs = repetitions[repetition][component - 1]
        guard sub >= 1, sub <= subs.count, !subs[sub - 1].isEmpty else { return nil }
        return subs[sub - 1]
    }

    /// Each repetition as a field of its own.
    public var each: [HL7Field] { repetitions.map { HL7Field(repetitions: [$0]) } }
}

/// Why a message could not be parsed at all (answered with AR).
public struct HL7ParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ER7 {
    /// Parses a message's text. Segments end with CR; LF and CRLF are tolerated. Segments are
    /// kept in order, unknown ones (Z-segments) included.
    public static func parse(_ text: String) throws(HL7ParseError) -> HL7Message {
        // The header's first few scalars name the delimiters (the rest is not copied).
        let scalars = Array(text.unicodeScalars.prefix(10))
        guard scalars.count >= 8, String(String.UnicodeScalarView(scalars[0..<3])) == "MSH" else {
            throw HL7ParseError("The message does not start with an MSH segment")
        }
        let f = scalars[3]
        let encoding = scalars[4...].prefix { $0 != f && $0 != "\r" && $0 != "\n" }
        guard encoding.count >= 4, encoding.count <= 5 else {
            throw HL7ParseError("MSH-2 must hold the four encoding characters (^~\\&), found '\(String(String.UnicodeScalarView(encoding)))'")
        }
        let e = Array(encoding)
        let all = [f] + e.prefix(4)
        guard Set(all).count == 5, !all.contains(where: { $0.properties.isAlphabetic || $0.properties.numericType != nil || $0 == " " || $0 == "\r" || $0 == "\n" }) else {
            throw HL7ParseError("The field separator and encoding characters must be five distinct punctuation characters")
        }
        let d = HL7Delimiters(field: Character(f), component: Character(e[0]), repetition: Character(e[1]),
                              escape: Character(e[2]), subcomponent: Character(e[3]))
        if all.allSatisfy(\.isASCII) {
            // Every delimiter is one byte (all senders seen): split the UTF-8 bytes.
            return HL7Message(delimiters: d, segments: try ByteSplitter(d).segments(text))
        }
        return HL7Message(delimiters: d, segments: try segments(byCharacters: text, d))
    }

    /// The segments cut by Characters (delimiters beyond ASCII).
    static func segments(byCharacters text: String, _ d: HL7Delimiters) throws(HL7ParseError) -> [HL7Segment] {
        var segments: [HL7Segment] = []
        for line in text.split(whereSeparator: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) {
            let raw = String(line)
            if raw.trimmingSpaces().isEmpty { continue }
            segments.append(try segment(raw, d))
        }
        return segments
    }

    /// The parser for one-byte delimiters: segments, fields, repetitions, components and
    /// sub-components cut from the UTF-8 bytes (a value becomes a String once, unescaped only when
    /// it holds the escape character). Gives the same message as the Character-based path.
    struct ByteSplitter {
        let d: HL7Delimiters
        let field, component, repetition, escape, subcomponent: UInt8

        init(_ d: HL7Delimiters) {
            self.d = d
            field = d.field.asciiValue!
            component = d.component.asciiValue!
            repetition = d.repetition.asciiValue!
            escape = d.escape.asciiValue!
            subcomponent = d.subcomponent.asciiValue!
        }

        func segments(_ text: String) throws(HL7ParseError) -> [HL7Segment] {
            let bytes = Array(text.utf8)
            var segments: [HL7Segment] = []
            for line in bytes.split(omittingEmptySubsequences: true, whereSeparator: { $0 == 0x0D || $0 == 0x0A }) {
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                // Other blank lines (ideographic spaces, no-break spaces): as the text path decides.
                if line.contains(where: { $0 >= 0x80 }), String(decoding: line, as: UTF8.self).trimmingSpaces().isEmpty { continue }
                segments.append(try segment(line))
            }
            return segments
        }

        func segment(_ line: ArraySlice<UInt8>) throws(HL7ParseError) -> HL7Segment {
            let parts = line.split(separator: field, omittingEmptySubsequences: false)
            let id = String(decoding: parts[0], as: UTF8.self)
            guard parts[0].count == 3, parts[0].allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) }) else {
                throw HL7ParseError("'\(id.prefix(20))' is not a segment id (three upper-case letters or digits)")
            }
            if id == "MSH" {
                // MSH-1 is the separator itself and MSH-2 is taken literally.
                var fields = [HL7Field(stringLiteral: String(d.field)),
                              HL7Field(stringLiteral: parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : "")]
                fields += parts.dropFirst(2).map(fieldValue)
                return HL7Segment(id, fields)
            }
            return HL7Segment(id, parts.dropFirst().map(fieldValue))
        }

        func fieldValue(_ raw: ArraySlice<UInt8>) -> HL7Field {
            if raw.isEmpty { return HL7Field() }
            return HL7Field(repetitions: raw.split(separator: repetition, omittingEmptySubsequences: false).map { rep in
                rep.split(separator: component, omittingEmptySubsequences: false).map { comp in
                    comp.split(separator: subcomponent, omittingEmptySubsequences: false).map { sub in
                        let value = String(decoding: sub, as: UTF8.self)
                        return sub.contains(escape) ? unescape(value, d) : value
                    }
                }
            })
        }
    }

    static func segment(_ raw: String, _ d: HL7Delimiters) throws(HL7ParseError) -> HL7Segment {
        let parts = raw.split(separator: d.field, omittingEmptySubsequences: false).map(String.init)
        let id = parts[0]
        guard id.count == 3, id.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) else {
            throw HL7ParseError("'\(id.prefix(20))' is not a segment id (three upper-case letters or digits)")
        }
        if id == "MSH" {
            // MSH-1 is the separator itself and MSH-2 is taken literally.
            var fields = [HL7Field(stringLiteral: String(d.field)), HL7Field(stringLiteral: parts.count > 1 ? parts[1] : "")]
            fields += parts.dropFirst(2).map { field($0, d) }
            return HL7Segment(id, fields)
        }
        return HL7Segment(id, parts.dropFirst().map { field($0, d) })
    }

    static func field(_ raw: String, _ d: HL7Delimiters) -> HL7Field {
        if raw.isEmpty { return HL7Field() }
        return HL7Field(repetitions: raw.split(separator: d.repetition, omittingEmptySubsequences: false).map { rep in
            rep.split(separator: d.component, omittingEmptySubsequences: false).map { comp in
                comp.split(separator: d.subcomponent, omittingEmptySubsequences: false).map { unescape(String($0), d) }
            }
        })
    }

    // MARK: escapes

    /// Decodes `\F\ \S\ \T\ \R\ \E\ \Xhh…\ \.br\` (and drops the highlighting escapes `\H\ \N\`
    /// and other formatting commands). Hex bytes are read as UTF-8 when they form it, else as
    /// GB 18030. An escape without its closing character is kept as written.
    public static func unescape(_ s: String, _ d: HL7Delimiters) -> String {
        guard s.contains(d.escape) else { return s }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            guard c == d.escape, let close = s[s.index(after: i)...].firstIndex(of: d.escape) else {
                out.append(c)
                i = s.index(after: i)
                continue
            }
            let code = String(s[s.index(after: i)..<close])
            switch code {
            case "F": out.append(d.field)
            case "S": out.append(d.component)
            case "T": out.append(d.subcomponent)
            case "R": out.append(d.repetition)
            case "E": out.append(d.escape)
            case "H", "N": break
            case ".br": out.append("\n")
            case _ where code.hasPrefix("X") && code.count > 1 && code.count % 2 == 1:
                var bytes: [UInt8] = []
                var j = code.index(after: code.startIndex)
                var valid = true
                while j < code.endIndex {
                    let k = code.index(j, offsetBy: 2)
                    guard let b = UInt8(code[j..<k], radix: 16) else { valid = false; break }
                    bytes.append(b)
                    j = k
                }
                if valid {
                    out += String(validating: bytes, as: UTF8.self) ?? Charsets.decode(bytes, charset: .gb18030) ?? ""
                } else {
                    out += String(s[i...close])
                }
            case _ where code.hasPrefix(".") || code.hasPrefix("C") || code.hasPrefix("M") || code.hasPrefix("Z"):
                break  // formatting and character-set switches: no text of their own
            default:
                out += String(s[i...close])
            }
            i = s.index(after: close)
        }
        return out
    }

    /// The value with delimiters escaped (for writing).
    public static func escape(_ s: String, _ d: HL7Delimiters) -> String {
        guard s.contains(where: { $0 == d.field || $0 == d.component || $0 == d.repetition || $0 == d.escape || $0 == d.subcomponent || $0 == "\n" || $0 == "\r" }) else {
            return s
        }
        var out = ""
        for c in s {
            switch c {
            case d.escape: out += "\(d.escape)E\(d.escape)"
            case d.field: out += "\(d.escape)F\(d.escape)"
            case d.component: out += "\(d.escape)S\(d.escape)"
            case d.subcomponent: out += "\(d.escape)T\(d.escape)"
            case d.repetition: out += "\(d.escape)R\(d.escape)"
            case "\n", "\r\n": out += "\(d.escape).br\(d.escape)"
            case "\r": out += "\(d.escape)X0D\(d.escape)"
            default: out.append(c)
            }
        }
        return out
    }

    // MARK: writing

    /// The message as ER7 text, segments ending with CR.
    public static func serialize(_ m: HL7Message) -> String {
        let d = m.delimiters
        var out = ""
        for s in m.segments {
            out += s.id
            if s.id == "MSH" {
                out.append(d.field)
                out += s[2].value ?? d.encodingCharacters
                for n in stride(from: 3, through: s.fields.count, by: 1) {
                    out.append(d.field)
                    out += write(s[n], d)
                }
            } else {
                for f in s.fields {
                    out.append(d.field)
                    out += write(f, d)
                }
            }
            out += "\r"
        }
        return out
    }

    static func write(_ f: HL7Field, _ d: HL7Delimiters) -> String {
        f.repetitions.map { rep in
            trimmed(rep.map { comp in trimmed(comp.map { escape($0, d) }).joined(separator: String(d.subcomponent)) })
                .joined(separator: String(d.component))
        }.joined(separator: String(d.repetition))
    }

    /// Without trailing empty parts (`a^^` is written `a`).
    static func trimmed(_ parts: [String]) -> [String] {
        var p = parts
        while let last = p.last, last.isEmpty, p.count > 1 { p.removeLast() }
        return p
    }
}
