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

    /// Whether `needle` occurs in the text (compared as UTF-8 bytes). Inlinable: unspecialised,
    /// every step of the scan was a witness-table call.
    @inlinable
    public func containsBytes(_ needle: String) -> Bool {
        if let found = utf8.withContiguousStorageIfAvailable({ haystack in
            needle.utf8.withContiguousStorageIfAvailable { pattern in Self.occurs(pattern, in: haystack) }
        }), let found { return found }
        let bytes = utf8, pattern = needle.utf8
        guard let head = pattern.first else { return true }
        var i = bytes.startIndex
        while let at = bytes[i...].firstIndex(of: head) {
            if bytes[at...].starts(with: pattern) { return true }
            i = bytes.index(after: at)
        }
        return false
    }

    /// Whether `pattern` occurs in `haystack`.
    @usableFromInline
    static func occurs(_ pattern: UnsafeBufferPointer<UInt8>, in haystack: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let head = pattern.first else { return true }
        guard haystack.count >= pattern.count else { return false }
        var i = 0
        while i <= haystack.count - pattern.count {
            if haystack[i] == head && (1..<pattern.count).allSatisfy({ haystack[i + $0] == pattern[$0] }) { return true }
            i += 1
        }
        return false
    }
}
