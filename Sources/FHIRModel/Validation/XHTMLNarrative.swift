/// FHIR's rules for a narrative's `div` (R4 narrative.html, invariants txt-1 and txt-2): well-formed
/// XHTML whose root is a `div` in the XHTML namespace, holding only the basic formatting elements
/// and attributes of HTML 4.0 (chapters 7–11 except 9.4, and 15), `<a>` with `name` or `href`,
/// images and inline `style` — no scripts, forms, frames, objects, event handlers, `javascript:`
/// links or external active content; only XML's five named entities and numeric character
/// references; some non-whitespace content. Every page that shows a narrative relies on it.
public enum XHTMLNarrative {
    public static let namespace = "http://www.w3.org/1999/xhtml"

    /// The elements a narrative may contain.
    static let elements: Set<String> = [
        "a", "abbr", "acronym", "address", "b", "bdo", "big", "blockquote", "br", "caption", "cite", "code", "col",
        "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
        "ins", "kbd", "li", "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "tt", "ul", "var",
    ]

    /// Attributes any element may carry (HTML 4.0's core, i18n and presentation attributes; event
    /// handlers are not among them).
    static let commonAttributes: Set<String> = [
        "id", "class", "style", "title", "lang", "xml:lang", "dir", "align", "valign", "width", "height",
        "border", "cellpadding", "cellspacing", "summary", "span", "colspan", "rowspan", "headers", "scope", "abbr",
        "char", "charoff", "frame", "rules", "start", "type", "value", "compact", "cite", "datetime", "nowrap", "bgcolor",
        "clear", "noshade", "size", "axis",
    ]

    /// Attributes that only some elements take.
    static let elementAttributes: [String: Set<String>] = [
        "a": ["href", "name", "hreflang", "rel", "rev", "charset"],
        "img": ["src", "alt", "longdesc", "hspace", "vspace"],
        "div": ["xmlns"],
    ]

    /// The problem with `text` as a narrative, or nil when it is one.
    public static func problem(_ text: String) -> String? {
        var parser = Parser(bytes: Array(text.utf8))
        do {
            try parser.document()
        } catch {
            return error.message
        }
        return nil
    }

    struct Failure: Error { let message: String }

    struct Parser {
        let bytes: [UInt8]
        var at = 0
        var open: [String] = []
        var content = false

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func document() throws(Failure) {
            skipSpace()
            guard peek("<div") else { throw Failure(message: "the narrative must be one XHTML <div> element") }
            try element(root: true)
            skipSpace()
            guard at == bytes.count else { throw Failure(message: "nothing may follow the narrative's closing </div>") }
            guard content else { throw Failure(message: "the narrative has no content (txt-2: some non-whitespace text or an image)") }
        }

        /// One element from its `<` to its end tag (or `/>`).
        mutating func element(root: Bool = false) throws(Failure) {
            at += 1   // "<"
            let name = readName()
            guard !name.isEmpty else { throw Failure(message: "'<' must start an element; write '&lt;' for the character") }
            guard Self.allowed(name) else {
                throw Failure(message: "element <\(name)> is not allowed in a narrative (txt-1: basic HTML formatting only; no scripts, forms, frames, objects, links to stylesheets)")
            }
            if name == "img" { content = true }
            var seen = Set<String>()
            var namespace: String?
            while true {
                skipSpace()
                guard at < bytes.count else { throw Failure(message: "the narrative ends inside the tag <\(name)>") }
                if bytes[at] == UInt8(ascii: "/") {
                    guard at + 1 < bytes.count, bytes[at + 1] == UInt8(ascii: ">") else { throw Failure(message: "'/' in the tag <\(name)> must end it: '/>'") }
                    at += 2
                    try checkRoot(root, name, namespace)
                    return
                }
                if bytes[at] == UInt8(ascii: ">") { at += 1; break }
                let attribute = readName()
                guard !attribute.isEmpty else { throw Failure(message: "unexpected character in the tag <\(name)>") }
                guard seen.insert(attribute).inserted else { throw Failure(message: "attribute '\(attribute)' appears twice on <\(name)>") }
                skipSpace()
                guard at < bytes.count, bytes[at] == UInt8(ascii: "=") else { throw Failure(message: "attribute '\(attribute)' on <\(name)> needs a quoted value") }
                at += 1
                skipSpace()
                let value = try readQuoted(attribute, name)
                try check(attribute: attribute, value: value, on: name)
                if attribute == "xmlns" { namespace = value }
            }
            try checkRoot(root, name, namespace)
            guard open.count < 64 else { throw Failure(message: "the narrative nests elements more than 64 deep") }
            open.append(name)
            defer { open.removeLast() }
            // Content up to the matching end tag.
            while true {
                guard at < bytes.count else { throw Failure(message: "<\(name)> is not closed") }
                let b = bytes[at]
                if b == UInt8(ascii: "<") {
                    if peek("</") {
                        at += 2
                        let end = readName()
                        skipSpace()
                        guard end == name, at < bytes.count, bytes[at] == UInt8(ascii: ">") else {
                            throw Failure(message: "</\(end)> does not close <\(name)>")
                        }
                        at += 1
                        return
                    }
                    if peek("<!--") {
                        guard let end = find("-->", from: at + 4) else { throw Failure(message: "a comment is not closed") }
                        at = end + 3
                        continue
                    }
                    if peek("<![CDATA[") {
                        guard let end = find("]]>", from: at + 9) else { throw Failure(message: "a CDATA section is not closed") }
                        if bytes[(at + 9)..<end].contains(where: { !Self.isSpace($0) }) { content = true }
                        at = end + 3
                        continue
                    }
                    if peek("<!") || peek("<?") {
                        throw Failure(message: "declarations and processing instructions are not allowed in a narrative")
                    }
                    try element()
                } else if b == UInt8(ascii: "&") {
                    try reference()
                    content = true
                } else if b == UInt8(ascii: ">") && at >= 2 && bytes[at - 1] == UInt8(ascii: "]") && bytes[at - 2] == UInt8(ascii: "]") {
                    throw Failure(message: "']]>' is not allowed in text")
                } else {
                    if !Self.isSpace(b) { content = true }
                    at += 1
                }
            }
        }

        func checkRoot(_ root: Bool, _ name: String, _ namespace: String?) throws(Failure) {
            guard root else { return }
            guard name == "div" else { throw Failure(message: "the narrative must be one XHTML <div> element") }
            guard namespace == XHTMLNarrative.namespace else {
                throw Failure(message: "the narrative's <div> must be in the XHTML namespace (xmlns=\"\(XHTMLNarrative.namespace)\")")
            }
        }

        static func allowed(_ name: String) -> Bool { XHTMLNarrative.elements.contains(name) }

        func check(attribute: String, value: String, on element: String) throws(Failure) {
            let lower = attribute.lowercased()
            if lower.hasPrefix("on") {
                throw Failure(message: "event handler attribute '\(attribute)' on <\(element)> is not allowed in a narrative")
            }
            guard XHTMLNarrative.commonAttributes.contains(attribute) || XHTMLNarrative.elementAttributes[element]?.contains(attribute) == true
                    || (attribute.hasPrefix("xmlns:") && element == "div") else {
                throw Failure(message: "attribute '\(attribute)' is not allowed on <\(element)> in a narrative")
            }
            if attribute == "href" || attribute == "src" || attribute == "longdesc" || attribute == "cite" {
                // Scheme as a browser reads it: control characters and spaces are ignored.
                let scheme = String(String.UnicodeScalarView(value.unicodeScalars.filter { $0.value > 0x20 })).lowercased()
                for active in ["javascript:", "vbscript:", "data:text/html", "data:application", "data:image/svg"] where scheme.hasPrefix(active) {
                    throw Failure(message: "'\(attribute)' on <\(element)> must not be active content ('\(active)')")
                }
            }
            if attribute == "style" {
                let style = value.lowercased()
                for active in ["url(", "expression(", "javascript:", "@import", "behavior:"] where style.contains(active) {
                    throw Failure(message: "the style on <\(element)> must not load or run anything ('\(active)')")
                }
            }
        }

        /// An entity or character reference at `&`: only XML's five and numeric ones.
        mutating func reference() throws(Failure) {
            guard let end = bytes[at...].firstIndex(of: UInt8(ascii: ";")), end - at <= 12 else {
                throw Failure(message: "'&' must start an entity such as '&amp;'")
            }
            let name = String(decoding: bytes[(at + 1)..<end], as: UTF8.self)
            at = end + 1
            if ["lt", "gt", "amp", "quot", "apos"].contains(name) { return }
            if name.hasPrefix("#x"), let v = UInt32(name.dropFirst(2), radix: 16), Self.isXMLChar(v) { return }
            if name.hasPrefix("#"), !name.hasPrefix("#x"), let v = UInt32(name.dropFirst()), Self.isXMLChar(v) { return }
            throw Failure(message: "entity '&\(name);' is not allowed in a narrative: only &lt; &gt; &amp; &quot; &apos; and numeric references (XHTML is XML)")
        }

        static func isXMLChar(_ v: UInt32) -> Bool {
            v == 0x9 || v == 0xA || v == 0xD || (0x20...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v) || (0x10000...0x10FFFF).contains(v)
        }

        mutating func readQuoted(_ attribute: String, _ element: String) throws(Failure) -> String {
            guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") || bytes[at] == UInt8(ascii: "'") else {
                throw Failure(message: "attribute '\(attribute)' on <\(element)> needs a quoted value")
            }
            let quote = bytes[at]
            at += 1
            var value: [UInt8] = []
            while at < bytes.count, bytes[at] != quote {
                if bytes[at] == UInt8(ascii: "<") { throw Failure(message: "'<' is not allowed in the value of '\(attribute)'") }
                if bytes[at] == UInt8(ascii: "&") {
                    let start = at
                    try reference()
                    value += Self.decodedReference(bytes[start..<at])
                    continue
                }
                value.append(bytes[at])
                at += 1
            }
            guard at < bytes.count else { throw Failure(message: "the value of '\(attribute)' on <\(element)> is not closed") }
            at += 1
            return String(decoding: value, as: UTF8.self)
        }

        /// What a (valid) reference stands for, so that `jav&#97;script:` is seen as what it is.
        static func decodedReference(_ reference: ArraySlice<UInt8>) -> [UInt8] {
            let name = String(decoding: reference.dropFirst().dropLast(), as: UTF8.self)
            switch name {
            case "lt": return Array("<".utf8)
            case "gt": return Array(">".utf8)
            case "amp": return Array("&".utf8)
            case "quot": return Array("\"".utf8)
            case "apos": return Array("'".utf8)
            default:
                let v = name.hasPrefix("#x") ? UInt32(name.dropFirst(2), radix: 16) : UInt32(name.dropFirst())
                guard let v, let scalar = Unicode.Scalar(v) else { return [] }
                return Array(String(Character(scalar)).utf8)
            }
        }

        mutating func readName() -> String {
            let start = at
            while at < bytes.count {
                let b = bytes[at]
                let letter = (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A)
                let other = (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ":") || b == UInt8(ascii: ".")
                guard letter || (at > start && other) else { break }
                at += 1
            }
            return String(decoding: bytes[start..<at], as: UTF8.self)
        }

        mutating func skipSpace() { while at < bytes.count, Self.isSpace(bytes[at]) { at += 1 } }

        static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

        func peek(_ s: String) -> Bool {
            let u = Array(s.utf8)
            return at + u.count <= bytes.count && bytes[at..<(at + u.count)].elementsEqual(u)
        }

        func find(_ s: String, from: Int) -> Int? {
            let u = Array(s.utf8)
            var i = from
            while i + u.count <= bytes.count {
                if bytes[i..<(i + u.count)].elementsEqual(u) { return i }
                i += 1
            }
            return nil
        }
    }
}
