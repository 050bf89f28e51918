import FHIRModel
import NIOCore

/// Writes Bundles around stored resources without re-parsing them: each resource's stored
/// bytes are copied into the entry as they are.
public struct BundleWriter: Sendable {
    private var out: [UInt8] = []
    private var entries = 0

    public init(type: String, total: Int?, links: [(relation: String, url: String)]) {
        out.reserveCapacity(16 * 1024)
        out.append(contentsOf: #"{"resourceType":"Bundle","type":"#.utf8)
        JSONWriter.writeString(type, into: &out)
        if let total { out.append(contentsOf: ",\"total\":\(total)".utf8) }
        out.append(contentsOf: #","link":["#.utf8)
        for (i, link) in links.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.write(.object(JSONObject([("relation", .string(link.relation)), ("url", .string(link.url))])), into: &out)
        }
        out.append(contentsOf: #"],"entry":["#.utf8)
    }

    /// Adds an entry; `resource` is raw resource JSON bytes, `extra` further entry members.
    public mutating func add(fullUrl: String?, resource: ByteBuffer?, extra: [(String, JSON)] = []) {
        if entries > 0 { out.append(UInt8(ascii: ",")) }
        entries += 1
        out.append(UInt8(ascii: "{"))
        var first = true
        func separator() { if !first { out.append(UInt8(ascii: ",")) }; first = false }
        if let fullUrl {
            separator()
            out.append(contentsOf: #""fullUrl":"#.utf8)
            JSONWriter.writeString(fullUrl, into: &out)
        }
        if let resource {
            separator()
            out.append(contentsOf: #""resource":"#.utf8)
            out.append(contentsOf: resource.readableBytesView)
        }
        for (key, value) in extra {
            separator()
            JSONWriter.writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.write(value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The finished Bundle's bytes.
    public func bytes() -> [UInt8] {
        var bytes = out
        bytes.append(contentsOf: "]}".utf8)
        return bytes
    }
}
