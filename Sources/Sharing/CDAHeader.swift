import FHIRModel
import Foundation

/// An XML element as the CDA header reader keeps it: local name (namespace prefix dropped),
/// attributes, text and children.
struct CDAElement: Sendable {
    var name: String
    var attributes: [String: String] = [:]
    var children: [CDAElement] = []
    var text = ""

    func child(_ name: String) -> CDAElement? { children.first { $0.name == name } }
    func all(_ name: String) -> [CDAElement] { children.filter { $0.name == name } }
    /// The element at a path of child names.
    func at(_ path: String...) -> CDAElement? {
        var current: CDAElement? = self
        for step in path { current = current?.child(step) }
        return current
    }
}

/// A small XML reader for CDA headers: elements, attributes, text, the five entities and numeric
/// character references, comments, CDATA and processing instructions; no DTDs (a document type
/// declaration is refused, as is anything that is not well-formed). It stops at `stopAt` children
/// of the root (a CDA's `component`, the body), so a large document costs only its header.
struct XMLHeaderReader {
    let bytes: [UInt8]
    var i = 0
    let stopAt: String?
    /// The document's encoding, from its XML declaration: UTF-8, or GB 18030 (which reads GBK and
    /// GB 2312 too), as Chinese hospital systems often write their documents.
    var gb18030 = false
    /// ISO 8859-1 declared: each byte is its character.
    var latin1 = false

    struct Malformed: Error { let message: String }

    init(_ data: [UInt8], stopAt: String?) {
        bytes = data
        self.stopAt = stopAt
        // A UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
    }

    static func root(of data: [UInt8], stopAt: String? = nil) throws -> CDAElement {
        var reader = XMLHeaderReader(data, stopAt: stopAt)
        switch try Self.declaredEncoding(data[reader.i...]) {
        case .gb18030:
            // A UTF-8 byte order mark says otherwise: GB 18030 would read its UTF-8 as other characters.
            guard reader.i == 0 else { throw Malformed(message: "a UTF-8 byte order mark, and a GB encoding declared") }
            reader.gb18030 = true
        case .latin1: reader.latin1 = reader.i == 0
        case .utf8: break
        }
        return try reader.document()
    }

    /// Foundation's GB 18030 encoding (CFStringEncoding kCFStringEncodingGB_18030_2000).
    static let gb18030Encoding = String.Encoding(rawValue: 0x8000_0632)

    /// Whether the XML declaration names GB 18030, GBK or GB 2312. No declaration, or UTF-8 (any
    /// spelling), is UTF-8; any other encoding is refused by name. The markup itself can be read in
    /// either: no byte of a GB 18030 multi-byte character is `<`, `>`, `&`, `=` or a quote.
    enum Encoding { case utf8, gb18030, latin1 }

    static func isXMLSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }

    /// The encoding the XML declaration names. No declaration, or UTF-8 or ASCII (any spelling), is
    /// UTF-8; GB 18030, GBK and GB 2312 are read as GB 18030; ISO 8859-1 as itself; any other is
    /// refused by name. The markup itself can be read in each: no byte of a GB 18030 multi-byte
    /// character is `<`, `>`, `&`, `=`, `/`, `?`, a quote or a space (`skip(past:)` steps over them).
    static func declaredEncoding(_ data: ArraySlice<UInt8>) throws -> Encoding {
        let start = data.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard start.starts(with: Array("<?xml".utf8)), start.count > 5,
              [0x20, 0x09, 0x0A, 0x0D].contains(start[start.startIndex + 5]) else { return .utf8 }
        let declaration = String(decoding: start.prefix(300).prefix { $0 != UInt8(ascii: ">") }, as: UTF8.self)
        guard let at = declaration.range(of: "encoding") else { return .utf8 }
        var rest = declaration[at.upperBound...].drop(while: isXMLSpace)
        guard rest.first == "=" else { return .utf8 }
        rest = rest.dropFirst().drop(while: isXMLSpace)
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return .utf8 }
        let name = rest.dropFirst().prefix { $0 != quote }
        switch name.uppercased().filter({ $0.isLetter || $0.isNumber }) {
        case "UTF8", "USASCII", "ASCII": return .utf8
        case "GB18030", "GBK", "GB2312", "CP936", "GB231280": return .gb18030
        case "ISO88591", "LATIN1": return .latin1
        default: throw Malformed(message: "the document's encoding '\(name)' is not supported (UTF-8, GB18030, GBK, GB2312, ISO-8859-1)")
        }
    }

    mutating func document() throws -> CDAElement {
        while true {
            skipSpace()
            guard i < bytes.count else { throw Malformed(message: "no root element") }
            if starts("<?") { try skip(past: "?>") } else if starts("<!--") { try skip(past: "-->") }
            else if starts("<!") { throw Malformed(message: "document type declarations are not accepted") }
            else if bytes[i] == UInt8(ascii: "<") { break }
            else { throw Malformed(message: "text before the root element") }
        }
        var stopped = false
        return try element(depth: 0, stopped: &stopped)
    }

    mutating func element(depth: Int, stopped: inout Bool) throws -> CDAElement {
        i += 1  // <
        var e = CDAElement(name: localName(try name()))
        while true {
            skipSpace()
            guard i < bytes.count else { throw Malformed(message: "unterminated <\(e.name)>") }
            if bytes[i] == UInt8(ascii: "/") {
                guard starts("/>") else { throw Malformed(message: "bad empty element <\(e.name)>") }
                i += 2
                return e
            }
            if bytes[i] == UInt8(ascii: ">") { i += 1; break }
            let attribute = try name()
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { throw Malformed(message: "attribute \(attribute) without a value") }
            i += 1
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") else {
                throw Malformed(message: "attribute \(attribute) value not quoted")
            }
            let quote = bytes[i]
            i += 1
            let start = i
            while i < bytes.count, bytes[i] != quote { i += 1 }
            guard i < bytes.count else { throw Malformed(message: "unterminated attribute \(attribute)") }
            e.attributes[localName(attribute)] = try decode(bytes[start..<i])
            i += 1
        }
        var text: [UInt8] = []
        while true {
            guard i < bytes.count else { throw Malformed(message: "unterminated <\(e.name)>") }
            if bytes[i] != UInt8(ascii: "<") {
                text.append(bytes[i]); i += 1; continue
            }
            if starts("<!--") { try skip(past: "-->"); continue }
            if starts("<![CDATA[") {
                i += 9
                let start = i
                try skip(past: "]]>")
                text += bytes[start..<(i - 3)]
                continue
            }
            if starts("<?") { try skip(past: "?>"); continue }
            if starts("</") {
                i += 2
                let closing = localName(try name())
                guard closing == e.name else { throw Malformed(message: "</\(closing)> closes <\(e.name)>") }
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else { throw Malformed(message: "bad closing tag </\(closing)>") }
                i += 1
                break
            }
            // A child; the root's `stopAt` child ends the reading (the header is all that is wanted).
            if depth == 0, let stopAt, peekName() == stopAt {
                stopped = true
                e.text = try decode(text[...])
                return e
            }
            e.children.append(try element(depth: depth + 1, stopped: &stopped))
            if stopped { break }
        }
        e.text = try decode(text[...]).trimmingCharacters(in: .whitespacesAndNewlines)
        return e
    }

    func starts(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return i + u.count <= bytes.count && bytes[i..<(i + u.count)].elementsEqual(u)
    }

    mutating func skip(past end: String) throws {
        let u = Array(end.utf8)
        while i + u.count <= bytes.count {
            if bytes[i..<(i + u.count)].elementsEqual(u) { i += u.count; return }
            // In GB 18030 a character's second byte may be `]` or `-`: step over whole characters.
            if gb18030, bytes[i] >= 0x81, bytes[i] <= 0xFE, i + 1 < bytes.count {
                i += bytes[i + 1] >= 0x30 && bytes[i + 1] <= 0x39 ? 4 : 2
                continue
            }
            i += 1
        }
        throw Malformed(message: "unterminated construct (missing \(end))")
    }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
    }

    static func isNameByte(_ b: UInt8) -> Bool {
        !(b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == UInt8(ascii: "=") || b == UInt8(ascii: ">")
          || b == UInt8(ascii: "/") || b == UInt8(ascii: "<") || b == UInt8(ascii: "\"") || b == UInt8(ascii: "'"))
    }

    mutating func name() throws -> String {
        let start = i
        while i < bytes.count, Self.isNameByte(bytes[i]) { i += 1 }
        guard i > start else { throw Malformed(message: "a name expected at byte \(start)") }
        return String(decoding: bytes[start..<i], as: UTF8.self)
    }

    func peekName() -> String? {
        var j = i + 1
        let start = j
        while j < bytes.count, Self.isNameByte(bytes[j]) { j += 1 }
        return j > start ? localName(String(decoding: bytes[start..<j], as: UTF8.self)) : nil
    }

    func localName(_ qualified: String) -> String {
        qualified.split(separator: ":").last.map(String.init) ?? qualified
    }

    /// Bytes of the document as text, in its encoding.
    func text(_ raw: ArraySlice<UInt8>) throws -> String {
        if latin1 { return String(String.UnicodeScalarView(raw.map { Unicode.Scalar($0) })) }
        if gb18030, raw.contains(where: { $0 >= 0x80 }) {
            guard let s = String(data: Data(raw), encoding: Self.gb18030Encoding) else { throw Malformed(message: "text is not GB 18030") }
            return s
        }
        guard let s = String(validating: raw, as: UTF8.self) else { throw Malformed(message: "text is not UTF-8") }
        return s
    }

    /// Text with its entity and character references replaced.
    func decode(_ raw: ArraySlice<UInt8>) throws -> String {
        let s = try text(raw)
        guard s.contains("&") else { return s }
        var out = ""
        var rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { throw Malformed(message: "unterminated entity reference") }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "lt": out += "<"
            case "gt": out += ">"
            case "amp": out += "&"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let number: UInt32? = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16)
                    : (entity.hasPrefix("#") ? UInt32(entity.dropFirst(), radix: 10) : nil)
                guard let number, let scalar = Unicode.Scalar(number) else { throw Malformed(message: "unknown entity &\(entity);") }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}

/// What a CDA R2 document's header says (WS/T 500 shared documents are CDA R2), as the metadata of
/// the DocumentReference that shares it.
struct CDAHeader: Sendable {
    struct InstanceID: Sendable, Equatable {
        var root: String
        var `extension`: String?
        /// As a FHIR Identifier: `urn:oid:<root>` and the extension, or the root alone as a URI.
        var identifier: JSON {
            if let ext = `extension` {
                return .object(JSONObject([("system", .string(CDAHeader.system(ofRoot: root))), ("value", .string(ext))]))
            }
            return .object(JSONObject([("system", .string("urn:ietf:rfc:3986")), ("value", .string(CDAHeader.system(ofRoot: root)))]))
        }
    }

    var id: InstanceID?
    /// The document type: code system (a FHIR system URI), code, display.
    var type: (system: String, code: String, display: String?)?
    var title: String?
    /// FHIR instant (the CDA `effectiveTime`; Beijing time when it names no zone).
    var effectiveTime: String?
    /// v3 Confidentiality code: N, R, V …
    var confidentiality: String?
    /// The patient's identifiers (`recordTarget/patientRole/id`).
    var patientIDs: [InstanceID] = []
    var patientName: String?
    /// Author organisation and custodian: identifier and name.
    var authorOrganization: (id: InstanceID?, name: String?)?
    var authorPerson: String?
    var custodian: (id: InstanceID?, name: String?)?

    static let loinc = "2.16.840.1.113883.6.1"

    /// A FHIR system for an OID root: LOINC's URI for LOINC, `urn:oid:` otherwise (a UUID root as `urn:uuid:`).
    static func system(ofRoot root: String) -> String {
        if root == loinc { return "http://loinc.org" }
        if root.contains("-") { return "urn:uuid:" + root.lowercased() }
        return "urn:oid:" + root
    }

    /// Whether bytes look like a CDA document (after a BOM, space, XML declaration and comments).
    static func looksLikeCDA(_ bytes: [UInt8]) -> Bool {
        let head = String(decoding: bytes.prefix(2048), as: UTF8.self)
        return head.contains("ClinicalDocument")
    }

    init(_ bytes: [UInt8]) throws {
        let root = try XMLHeaderReader.root(of: bytes, stopAt: "component")
        guard root.name == "ClinicalDocument" else {
            throw XMLHeaderReader.Malformed(message: "the root element is <\(root.name)>, not <ClinicalDocument>")
        }
        id = Self.instance(root.child("id"))
        if let code = root.child("code"), let c = code.attributes["code"] {
            type = (code.attributes["codeSystem"].map(Self.system(ofRoot:)) ?? "urn:ietf:rfc:3986", c, code.attributes["displayName"])
        }
        title = root.child("title").map(\.text).flatMap { $0.isEmpty ? nil : $0 }
        effectiveTime = root.child("effectiveTime")?.attributes["value"].flatMap(Self.instant)
        confidentiality = root.child("confidentialityCode")?.attributes["code"]
        let role = root.at("recordTarget", "patientRole")
        patientIDs = role?.all("id").compactMap(Self.instance) ?? []
        patientName = role?.at("patient", "name").map(Self.name)
        if let author = root.at("author", "assignedAuthor") {
            if let org = author.child("representedOrganization") {
                authorOrganization = (Self.instance(org.child("id")), org.child("name")?.text)
            }
            authorPerson = author.at("assignedPerson", "name").map(Self.name)
        }
        if let org = root.at("custodian", "assignedCustodian", "representedCustodianOrganization") {
            custodian = (Self.instance(org.child("id")), org.child("name")?.text)
        }
    }

    static func digit(_ c: Character) -> Bool { c >= "0" && c <= "9" }

    static func instance(_ e: CDAElement?) -> InstanceID? {
        guard let e, let root = e.attributes["root"], !root.isEmpty else { return nil }
        return InstanceID(root: root, extension: e.attributes["extension"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// A name element's text, or its parts (family then given, as Chinese names are written).
    static func name(_ e: CDAElement) -> String {
        let parts = (e.all("family") + e.all("given")).map(\.text).filter { !$0.isEmpty }
        return parts.isEmpty ? e.text : parts.joined()
    }

    /// A CDA TS (`YYYYMMDDHHMMSS[.fff][+ZZZZ]`, possibly shorter) as a FHIR instant. Without a zone
    /// the time is Beijing time (+08:00); a date alone is its midnight. Nil when not a time.
    static func instant(_ ts: String) -> String? {
        var digits = ts.prefix { Self.digit($0) || $0 == "." }
        if let dot = digits.firstIndex(of: ".") { digits = digits[..<dot] }
        let zonePart = ts.drop { Self.digit($0) || $0 == "." }
        guard digits.count >= 8, digits.count <= 14, digits.count % 2 == 0 else { return nil }
        let d = Array(digits).map(String.init)
        func part(_ at: Int) -> String { at + 1 < d.count ? d[at] + d[at + 1] : "00" }
        let zone: String
        if zonePart.count == 5, let sign = zonePart.first, sign == "+" || sign == "-", zonePart.dropFirst().allSatisfy(Self.digit) {
            let z = Array(zonePart.dropFirst()).map(String.init)
            zone = "\(sign)\(z[0])\(z[1]):\(z[2])\(z[3])"
        } else if zonePart.isEmpty {
            zone = "+08:00"
        } else {
            return nil
        }
        let year = d[0...3].joined()
        return "\(year)-\(part(4))-\(part(6))T\(part(8)):\(part(10)):\(part(12))\(zone)"
    }
}
