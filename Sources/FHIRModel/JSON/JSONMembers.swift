import Foundation

/// A top-level object's string members found in serialized JSON without building the value. A
/// large Binary's `data` is streamed from its stored bytes this way (issue 29) instead of being
/// parsed into one string and decoded into a second copy.
public enum JSONMembers {
    /// The byte range (inside the quotes) of each top-level member named in `names` whose value is
    /// a string. Nil when the input is not one well-formed-looking object, or when a wanted string
    /// holds an escape (the caller then parses the whole value instead). Values not asked for are
    /// stepped over, not checked: the input is what the store wrote.
    public static func strings(in bytes: UnsafeRawBufferPointer, named names: Set<String>) -> [String: Range<Int>]? {
        guard let all = members(in: bytes) else { return nil }
        var found: [String: Range<Int>] = [:]
        for member in all where member.string && names.contains(member.key) {
            // An escape would need decoding: leave that to the parser.
            if member.range.count > 0, memchr(bytes.baseAddress! + member.range.lowerBound, 0x5C, member.range.count) != nil { return nil }
            found[member.key] = member.range
        }
        return found
    }

    /// One object's members in order: each key, and the byte range of its value — inside the
    /// quotes for a string (`string`), the whole value's text for anything else. Nil when the
    /// input is not one object. Keys with escapes are taken as written.
    public static func members(in bytes: UnsafeRawBufferPointer) -> [(key: String, range: Range<Int>, string: Bool)]? {
        var scanner = Scanner(bytes: bytes)
        var found: [(key: String, range: Range<Int>, string: Bool)] = []
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        scanner.skipSpace()
        if scanner.take(UInt8(ascii: "}")) { return scanner.atEnd ? found : nil }
        while true {
            scanner.skipSpace()
            guard let keyRange = scanner.string() else { return nil }
            let key = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[keyRange]), as: UTF8.self)
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: ":")) else { return nil }
            scanner.skipSpace()
            if scanner.peek == UInt8(ascii: "\"") {
                guard let value = scanner.string() else { return nil }
                found.append((key, value, true))
            } else {
                let start = scanner.i
                guard scanner.skipValue() else { return nil }
                found.append((key, start..<scanner.i, false))
            }
            scanner.skipSpace()
            if scanner.take(UInt8(ascii: ",")) { continue }
            guard scanner.take(UInt8(ascii: "}")) else { return nil }
            return scanner.atEnd ? found : nil
        }
    }

    /// The byte ranges of an array's elements (each value's whole text). Nil when the input is not
    /// one array.
    public static func elements(in bytes: UnsafeRawBufferPointer) -> [Range<Int>]? {
        var scanner = Scanner(bytes: bytes)
        var found: [Range<Int>] = []
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "[")) else { return nil }
        scanner.skipSpace()
        if scanner.take(UInt8(ascii: "]")) { return scanner.atEnd ? found : nil }
        while true {
            scanner.skipSpace()
            let start = scanner.i
            guard scanner.skipValue() else { return nil }
            found.append(start..<scanner.i)
            scanner.skipSpace()
            if scanner.take(UInt8(ascii: ",")) { continue }
            guard scanner.take(UInt8(ascii: "]")) else { return nil }
            return scanner.atEnd ? found : nil
        }
    }

    struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var i = 0

        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        /// Only whitespace left.
        var atEnd: Bool {
            var copy = self
            copy.skipSpace()
            return copy.i == bytes.count
        }

        mutating func take(_ b: UInt8) -> Bool {
            guard peek == b else { return false }
            i += 1
            return true
        }

        mutating func skipSpace() {
            while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { i += 1 }
        }

        /// A string at `i`: the range inside its quotes; `i` moves past the closing quote.
        mutating func string() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < bytes.count {
                // The next quote (memchr: a document's base64 is megabytes long), unless escaped.
                guard let hit = memchr(bytes.baseAddress! + i, 0x22, bytes.count - i) else { return nil }
                let q = bytes.baseAddress!.distance(to: UnsafeRawPointer(hit))
                var backslashes = 0
                while q - backslashes - 1 >= start, bytes[q - backslashes - 1] == 0x5C { backslashes += 1 }
                i = q + 1
                if backslashes % 2 == 0 { return start..<q }
            }
            return nil
        }

        /// Steps over one value of any kind.
        mutating func skipValue() -> Bool {
            guard let b = peek else { return false }
            switch b {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let c = peek {
                    switch c {
                    case UInt8(ascii: "\""):
                        guard string() != nil else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                // A number or a literal: up to the next delimiter.
                let start = i
                while let c = peek, c != UInt8(ascii: ","), c != UInt8(ascii: "}"), c != UInt8(ascii: "]"),
                      c != 0x20, c != 0x0A, c != 0x0D, c != 0x09 { i += 1 }
                return i > start
            }
        }
    }
}
