/// Small text operations on hot paths, done on Unicode scalars and UTF-8 bytes: Foundation's
/// `trimmingCharacters`, `range(of:)` and `addingPercentEncoding` bridge every string through
/// NSString, which cost several percent of an HL7 message's CPU.
extension StringProtocol {
    /// Without leading and trailing spaces and tabs (Foundation's `.whitespaces`: Unicode Zs and TAB).
    public func trimmingSpaces() -> Substring {
        let scalars = Substring(self).unicodeScalars
        func isSpace(_ u: Unicode.Scalar) -> Bool { u == "\t" || u.properties.generalCategory == .spaceSeparator }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        return Substring(scalars[first...last])
    }

    /// Whether `needle` occurs in the text (compared as UTF-8 bytes).
    public func containsBytes(_ needle: String) -> Bool {
        let bytes = utf8, pattern = needle.utf8
        guard let head = pattern.first else { return true }
        var i = bytes.startIndex
        while let at = bytes[i...].firstIndex(of: head) {
            if bytes[at...].starts(with: pattern) { return true }
            i = bytes.index(after: at)
        }
        return false
    }
}
