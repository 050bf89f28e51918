/// The FHIR R4 primitive types and the lexical rules each imposes on its JSON form
/// (http://hl7.org/fhir/R4/datatypes.html#primitive).
public enum FHIRPrimitive: String, Sendable, CaseIterable {
    case boolean, integer, string, decimal, uri, url, canonical, base64Binary, instant, date, dateTime, time
    case code, oid, id, markdown, unsignedInt, positiveInt, uuid, xhtml

    public init?(typeName: String) {
        self.init(rawValue: typeName)
    }

    /// Checks a JSON value against this primitive type. Returns a message describing
    /// the problem, or nil when the value is valid.
    public func problem(with value: JSON) -> String? {
        switch self {
        case .boolean:
            return value.boolValue == nil ? "must be a JSON boolean, found \(value.kindName)" : nil
        case .integer, .unsignedInt, .positiveInt:
            guard let text = value.numberText else { return "must be a JSON number, found \(value.kindName)" }
            guard let n = Int64(text) else { return "'\(text)' is not an integer" }
            switch self {
            case .integer where n < Int64(Int32.min) || n > Int64(Int32.max):
                return "\(text) is outside the 32-bit integer range"
            case .unsignedInt where n < 0 || n > Int64(Int32.max):
                return "\(text) must be between 0 and 2147483647"
            case .positiveInt where n < 1 || n > Int64(Int32.max):
                return "\(text) must be between 1 and 2147483647"
            default:
                return nil
            }
        case .decimal:
            return value.numberText == nil ? "must be a JSON number, found \(value.kindName)" : nil
        default:
            guard let s = value.stringValue else { return "must be a JSON string, found \(value.kindName)" }
            return lexicalProblem(s)
        }
    }

    /// Lexical rules for primitives carried as JSON strings.
    public func lexicalProblem(_ s: String) -> String? {
        if s.isEmpty { return "must not be empty" }
        switch self {
        case .string, .markdown:
            // R4 limits strings to 1024 * 1024 characters (not bytes).
            if s.utf8.count > 1_048_576 && s.unicodeScalars.count > 1_048_576 { return "is longer than 1,048,576 characters" }
            if s.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) {
                return "contains a control character (only tab, CR and LF are allowed)"
            }
            return nil
        case .xhtml:
            return XHTMLNarrative.problem(s)
        case .uri, .url, .canonical:
            return s.utf8.contains(where: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) ? "'\(s)' is not a valid \(rawValue): it contains whitespace" : nil
        case .code:
            // [^\s]+(\s[^\s]+)*: no leading/trailing whitespace, single internal spaces.
            let bytes = Array(s.utf8)
            if isSpace(bytes.first!) || isSpace(bytes.last!) { return "'\(s)' is not a valid code: leading or trailing whitespace" }
            for i in 1..<max(bytes.count, 1) where isSpace(bytes[i]) && isSpace(bytes[i - 1]) {
                return "'\(s)' is not a valid code: repeated whitespace"
            }
            return nil
        case .id:
            return FHIRPrimitive.isValidID(s) ? nil : "'\(s)' is not a valid id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
        case .oid:
            return isValidOID(s) ? nil : "'\(s)' is not a valid oid (urn:oid:...)"
        case .uuid:
            return isValidUUIDURN(s) ? nil : "'\(s)' is not a valid uuid (urn:uuid:...)"
        case .base64Binary:
            return isValidBase64(s) ? nil : "is not valid base64"
        case .date:
            return FHIRDateTime.parse(s, kind: .date) == nil ? "'\(s)' is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)" : nil
        case .dateTime:
            return FHIRDateTime.parse(s, kind: .dateTime) == nil ? "'\(s)' is not a valid dateTime (YYYY[-MM[-DD[Thh:mm:ss[.fff](Z|+hh:mm)]]])" : nil
        case .instant:
            return FHIRDateTime.parse(s, kind: .instant) == nil ? "'\(s)' is not a valid instant (YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm))" : nil
        case .time:
            return FHIRDateTime.parseTime(Array(s.utf8)[...]) == nil ? "'\(s)' is not a valid time (hh:mm:ss)" : nil
        case .boolean, .integer, .decimal, .unsignedInt, .positiveInt:
            return nil
        }
    }

    /// `[A-Za-z0-9\-\.]{1,64}`
    public static func isValidID(_ s: String) -> Bool {
        let bytes = s.utf8
        guard !bytes.isEmpty, bytes.count <= 64 else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E
        }
    }

    private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    private func isValidOID(_ s: String) -> Bool {
        guard s.hasPrefix("urn:oid:") else { return false }
        let parts = s.dropFirst(8).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, let first = parts.first, ["0", "1", "2"].contains(first) else { return false }
        return parts.dropFirst().allSatisfy { p in
            !p.isEmpty && p.allSatisfy(\.isASCIIDigit) && (p == "0" || p.first != "0")
        }
    }

    private func isValidUUIDURN(_ s: String) -> Bool {
        guard s.hasPrefix("urn:uuid:") else { return false }
        let u = Array(s.utf8.dropFirst(9))
        guard u.count == 36 else { return false }
        for (i, b) in u.enumerated() {
            if [8, 13, 18, 23].contains(i) { if b != UInt8(ascii: "-") { return false } } else if !isHex(b) { return false }
        }
        return true
    }

    private func isHex(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46) }

    /// One pass over the bytes with a class table: a document's megabyte of base64 is checked in
    /// about a millisecond (a Binary's `data`, an Attachment's).
    private func isValidBase64(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { bytes in
            Self.base64Classes.withUnsafeBufferPointer { table in
                var count = 0
                var padding = 0
                var i = 0
                let n = bytes.count
                while i < n {
                    // The common run: letters only, one predictable branch per byte.
                    let start = i
                    while i < n && table[Int(bytes[i])] == 1 { i += 1 }
                    if i > start {
                        if padding > 0 { return false }
                        count += i - start
                    }
                    guard i < n else { break }
                    switch table[Int(bytes[i])] {
                    case 2: break
                    case 3:
                        padding += 1
                        count += 1
                    default:
                        return false
                    }
                    i += 1
                }
                return count % 4 == 0 && padding <= 2
            }
        }
    }

    /// Per byte: 1 a base64 letter, 2 whitespace, 3 `=`, 0 anything else.
    static let base64Classes: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 256)
        for b in Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8) { table[Int(b)] = 1 }
        for b in [UInt8(ascii: " "), 0x09, 0x0A, 0x0D] { table[Int(b)] = 2 }
        table[Int(UInt8(ascii: "="))] = 3
        return table
    }()
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
