import Crypto
import Foundation

/// The rows a stored `CodeSystem` keeps for the terminology service (ADR 022): one
/// `ConceptEntry` per concept and the transitive closure of its hierarchy, written with the
/// resource in its transaction like any index row, so that a lookup is one indexed row and
/// subsumption (`$subsumes`, `:below`, `:above`, `is-a` filters) one index probe — even for a code
/// system of 100,000 concepts whose JSON would take a second to parse.
///
/// The hierarchy is read as R4 defines it: nested `concept`s, and the `parent` / `child`
/// properties (those declared with the URIs `http://hl7.org/fhir/concept-properties#parent` /
/// `#child`, or named so). Supplements and `content: not-present` keep no rows. The row of code ""
/// describes the code system itself (name, status, content, caseSensitive, count).
public enum ConceptIndex {
    public static let conceptParameter = "_concept"
    public static let closureParameter = "_closure"
    static let parentURI = "http://hl7.org/fhir/concept-properties#parent"
    static let childURI = "http://hl7.org/fhir/concept-properties#child"

    /// Bounds of a hierarchy the platform indexes: deeper or larger ones are refused on write
    /// (`problem`), never half-indexed.
    public static let maxDepth = 256
    public static let maxClosureRows = 5_000_000

    /// Why a CodeSystem's hierarchy cannot be indexed (too deep, or a closure too large), or nil.
    public static func problem(_ codeSystem: JSONObject) -> String? {
        build(codeSystem).problem
    }

    public static func entries(for codeSystem: JSONObject) -> [IndexEntry] {
        let built = build(codeSystem)
        return built.problem == nil ? built.entries : []
    }

    static func build(_ codeSystem: JSONObject) -> (entries: [IndexEntry], problem: String?) {
        guard let system = codeSystem["url"]?.stringValue, !system.isEmpty else { return ([], nil) }
        let content = codeSystem["content"]?.stringValue ?? "complete"
        guard content != "supplement", content != "not-present" else { return ([], nil) }
        let version = codeSystem["version"]?.stringValue ?? ""
        // Which property codes mean parent and child in this code system.
        var parentCodes: Set<String> = ["parent"], childCodes: Set<String> = ["child"]
        for p in codeSystem["property"]?.arrayValue ?? [] {
            guard let code = p["code"]?.stringValue else { continue }
            switch p["uri"]?.stringValue {
            case parentURI?: parentCodes.insert(code)
            case childURI?: childCodes.insert(code)
            case _?: parentCodes.remove(code); childCodes.remove(code)   // a property of another meaning that happens to be so named
            case nil: break
            }
        }
        var order: [String] = []
        var concepts: [String: JSONObject] = [:]
        var parents: [String: [String]] = [:]
        func addParent(_ child: String, _ parent: String) {
            guard child != parent, !(parents[child]?.contains(parent) ?? false) else { return }
            parents[child, default: []].append(parent)
        }
        func walk(_ list: [JSON], parent: String?) {
            for item in list {
                guard case .object(let concept) = item, let code = concept["code"]?.stringValue else { continue }
                if concepts[code] == nil { order.append(code) }
                concepts[code] = concept
                if let parent { addParent(code, parent) }
                for p in concept["property"]?.arrayValue ?? [] {
                    guard let pcode = p["code"]?.stringValue, let value = p["valueCode"]?.stringValue ?? p["valueString"]?.stringValue else { continue }
                    if parentCodes.contains(pcode) { addParent(code, value) }
                    if childCodes.contains(pcode) { addParent(value, code) }
                }
                walk(concept["concept"]?.arrayValue ?? [], parent: code)
            }
        }
        walk(codeSystem["concept"]?.arrayValue ?? [], parent: nil)

        var children: [String: [String]] = [:]
        for code in order { for p in parents[code] ?? [] { children[p, default: []].append(code) } }

        // Ancestors of each code (itself included), memoized; a cycle is cut where it closes.
        var ancestors: [String: Set<String>] = [:]
        var visiting: Set<String> = []
        var problem: String?
        var pairs = 0
        var levels: [String: Int] = [:]
        func closure(_ code: String, depth: Int) -> Set<String> {
            if let known = ancestors[code] { return known }
            guard problem == nil else { return [code] }
            guard depth <= maxDepth else {
                problem = "The hierarchy is more than \(maxDepth) levels deep (at '\(code)')"
                return [code]
            }
            guard visiting.insert(code).inserted else { return [code] }
            var result: Set<String> = [code]
            var level = 0
            for p in parents[code] ?? [] {
                result.formUnion(closure(p, depth: depth + 1))
                level = max(level, (levels[p] ?? 0) + 1)
            }
            visiting.remove(code)
            ancestors[code] = result
            levels[code] = level
            if level > maxDepth, problem == nil { problem = "The hierarchy is more than \(maxDepth) levels deep (at '\(code)')" }
            pairs += result.count
            if pairs > maxClosureRows { problem = "The hierarchy's closure has more than \(maxClosureRows) pairs" }
            return result
        }
        for code in order where problem == nil { _ = closure(code, depth: 0) }
        if let problem { return ([], problem) }

        var entries: [IndexEntry] = []
        entries.reserveCapacity(order.count * 5 + 1)
        // The code system itself, as the row of code "" (no concept has an empty code): what a
        // lookup needs of it without reading a document of 100,000 concepts.
        var header = JSONObject()
        for key in ["name", "title", "status", "content", "caseSensitive", "hierarchyMeaning", "language", "valueSet", "versionNeeded"] {
            if let value = codeSystem[key] { header[key] = value }
        }
        header["count"] = .number(String(order.count))
        // Changes whenever the code system does (its concepts, properties, version): what an
        // expansion cached from it is checked against.
        var hashed = codeSystem
        hashed["id"] = nil
        hashed["meta"] = nil
        header["hash"] = .string(SHA256.hash(data: JSONWriter.bytes(.object(hashed))).map { String(format: "%02x", $0) }.joined())
        entries.append(IndexEntry(conceptParameter, .concept(ConceptEntry(
            system: system, version: version, code: "", display: codeSystem["name"]?.stringValue ?? codeSystem["title"]?.stringValue,
            detail: JSONWriter.string(.object(header))))))
        for code in order {
            let concept = concepts[code]!
            var detail = JSONObject()
            if let definition = concept["definition"] { detail["definition"] = definition }
            if let designation = concept["designation"] { detail["designation"] = designation }
            if let property = concept["property"] { detail["property"] = property }
            if let p = parents[code], !p.isEmpty { detail["parent"] = .array(p.map { .string($0) }) }
            if let c = children[code], !c.isEmpty { detail["child"] = .array(c.map { .string($0) }) }
            if isInactive(concept) { detail["inactive"] = .bool(true) }
            entries.append(IndexEntry(conceptParameter, .concept(ConceptEntry(
                system: system, version: version, code: code, display: concept["display"]?.stringValue,
                detail: JSONWriter.string(.object(detail))))))
            for ancestor in closure(code, depth: 0).sorted() {
                entries.append(IndexEntry(closureParameter, .closure(system: system, ancestor: ancestor, code: code)))
            }
        }
        return (entries, nil)
    }

    /// `inactive: true`, or a `status` of retired / inactive (the standard concept properties).
    static func isInactive(_ concept: JSONObject) -> Bool {
        for p in concept["property"]?.arrayValue ?? [] {
            switch p["code"]?.stringValue {
            case "inactive": if p["valueBoolean"]?.boolValue == true { return true }
            case "status":
                if let s = p["valueCode"]?.stringValue ?? p["valueString"]?.stringValue, ["retired", "inactive"].contains(s) { return true }
            default: break
            }
        }
        return false
    }
}
