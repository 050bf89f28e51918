/// The text of a query: percent-decoding of its components and the comma-separated values of a
/// parameter (FHIR search: `,` separates values, `\,` is a comma inside one).
extension SearchQueryParser {
    /// Splits on commas not escaped with a backslash, unescaping `\,`, `\|`, `\$`, `\\`.
    func splitValues(_ s: String) -> [String] {
        // Without escapes (nearly always): split on the commas' bytes.
        if !s.utf8.contains(UInt8(ascii: "\\")) {
            guard s.utf8.contains(UInt8(ascii: ",")) else { return s.isEmpty ? [] : [s] }
            return s.utf8.split(separator: UInt8(ascii: ",")).map { String(decoding: $0, as: UTF8.self) }
        }
        var result: [String] = []
        var current = ""
        var escaped = false
        for c in s {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" { escaped = true; continue }
            if c == "," { if !current.isEmpty { result.append(current) }; current = ""; continue }
            current.append(c)
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query component.
public func percentDecode(_ s: String) -> String {
    guard s.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return s }
    func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }
    var bytes: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "+") {
            bytes.append(0x20)
        } else if b == UInt8(ascii: "%"), it.count >= 2, let high = hex(it[it.startIndex]), let low = hex(it[it.startIndex + 1]) {
            bytes.append(high << 4 | low)
            it = it.dropFirst(2)
        } else {
            bytes.append(b)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
