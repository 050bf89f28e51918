/// A resource serialised ahead of commit with holes for `meta.versionId` and
/// `meta.lastUpdated`. The store's single writer knows the version and time only at
/// commit; filling two holes is a byte copy, so no JSON work happens while it holds the lock.
public struct ResourceTemplate: Sendable {
    let prefix: [UInt8]
    let middle: [UInt8]
    let suffix: [UInt8]

    private static let versionHole = "\u{1}"
    private static let timeHole = "\u{2}"

    /// Builds a template from a resource object. `resourceType`, `id` and `meta` are put
    /// first; other members keep their order. Any existing versionId/lastUpdated is replaced.
    public init(resource: JSONObject, type: String, id: String) {
        var meta = resource["meta"]?.objectValue ?? JSONObject()
        meta["versionId"] = nil
        meta["lastUpdated"] = nil
        var metaOut = JSONObject()
        metaOut["versionId"] = .string(Self.versionHole)
        metaOut["lastUpdated"] = .string(Self.timeHole)
        for (k, v) in meta { metaOut[k] = v }
        var out = JSONObject()
        out["resourceType"] = .string(type)
        out["id"] = .string(id)
        out["meta"] = .object(metaOut)
        for (k, v) in resource where k != "resourceType" && k != "id" && k != "meta" {
            out.appendUnchecked(k, v)
        }
        let bytes = JSONWriter.bytes(.object(out))
        // The validator rejects control characters in strings, so the escaped holes
        // ("\u0001", "\u0002") occur exactly once: where meta puts them, first.
        let v = Array("\"\\u0001\"".utf8), t = Array("\"\\u0002\"".utf8)
        let vi = bytes.byteRange(of: v)!
        let ti = bytes.byteRange(of: t)!
        prefix = Array(bytes[..<vi.lowerBound])
        middle = Array(bytes[vi.upperBound..<ti.lowerBound])
        suffix = Array(bytes[ti.upperBound...])
    }

    /// The final content for a version committed at `lastUpdated` (microseconds since the epoch).
    public func render(version: Int, lastUpdated: Int64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(prefix.count + middle.count + suffix.count + 40)
        out.append(contentsOf: prefix)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: String(version).utf8)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: middle)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: FHIRDateTime.formatInstant(micros: lastUpdated).utf8)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: suffix)
        return out
    }
}

extension Array where Element == UInt8 {
    func byteRange(of needle: [UInt8]) -> Range<Int>? {
        guard needle.count <= count else { return nil }
        var i = 0
        let last = count - needle.count
        while i <= last {
            if self[i] == needle[0] {
                var match = true
                for j in 1..<needle.count where self[i + j] != needle[j] {
                    match = false
                    break
                }
                if match { return i..<(i + needle.count) }
            }
            i += 1
        }
        return nil
    }
}
