/// The forms `Reference.reference` can take (http://hl7.org/fhir/R4/references.html).
public enum ParsedReference: Sendable, Equatable {
    /// `Patient/123` or `Patient/123/_history/2`.
    case relative(type: String, id: String, version: String?)
    /// `#p1`: a contained resource.
    case contained(String)
    /// `urn:uuid:...` / `urn:oid:...`: a Bundle-local full URL.
    case urn(String)
    /// `Patient?identifier=sys|val`: a conditional reference, resolved inside a transaction.
    case conditional(type: String, query: String)
    /// Any other absolute URL (possibly to this server; the caller decides).
    case absolute(String)
}

/// Parses and checks reference strings.
public enum ReferenceSyntax {
    public static func parse(_ s: String) -> ParsedReference? {
        // On UTF-8 bytes: every reference of every write passes here (validation, index rows).
        let bytes = s.utf8
        guard let first = bytes.first else { return nil }
        if first == UInt8(ascii: "#") { return .contained(String(s.dropFirst())) }
        if s.hasPrefix("urn:uuid:") || s.hasPrefix("urn:oid:") { return .urn(s) }
        if let q = bytes.firstIndex(of: UInt8(ascii: "?")),
           !bytes[..<q].contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") }) {
            let type = String(s[..<q])
            guard FHIRSchema.r4.isResourceType(type) else { return nil }
            return .conditional(type: type, query: String(s[s.index(after: q)...]))
        }
        if s.containsBytes("://") {
            // An absolute URL whose tail is Type/id is still parsed as such for callers that care.
            return .absolute(s)
        }
        let parts = bytes.split(separator: UInt8(ascii: "/"), maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 4 else { return nil }
        let type = String(Substring(parts[0])), id = String(Substring(parts[1]))
        guard FHIRSchema.r4.isResourceType(type), FHIRPrimitive.isValidID(id) else { return nil }
        if parts.count == 2 { return .relative(type: type, id: id, version: nil) }
        let version = String(Substring(parts[3]))
        guard parts[2].elementsEqual("_history".utf8), FHIRPrimitive.isValidID(version) else { return nil }
        return .relative(type: type, id: id, version: version)
    }

    /// A message describing why `s` is not a valid reference, or nil.
    public static func problem(_ s: String) -> String? {
        parse(s) == nil ? "'\(s)' is not a valid reference (expected Type/id, an absolute URL, #contained or urn:uuid:)" : nil
    }

    /// `Type/id` at the end of an absolute URL (`https://host/fhir/Patient/1` → Patient, 1).
    public static func typeAndID(fromURL url: String) -> (type: String, id: String)? {
        let parts = url.split(separator: "/").map(String.init)
        var tail = parts
        if tail.count >= 4, tail[tail.count - 2] == "_history" { tail.removeLast(2) }
        guard tail.count >= 2 else { return nil }
        let type = tail[tail.count - 2], id = tail[tail.count - 1]
        guard FHIRSchema.r4.isResourceType(type), FHIRPrimitive.isValidID(id) else { return nil }
        return (type, id)
    }
}
