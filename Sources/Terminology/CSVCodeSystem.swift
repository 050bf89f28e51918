import FHIRModel
import Foundation
import Platform

/// A code system from a CSV table (`huitong terminology load table.csv --url …`): one concept a
/// row, with a column mapping — `code`, `display`, `parent` (the hierarchy), `zh` / `en`
/// (designations in zh-CN and en), `definition`, and `property:NAME` (a string property). Columns
/// are named by their header; unmapped roles default to a header of the same name.
public struct CSVCodeSystem: Sendable {
    public var url: String
    public var version: String?
    public var name: String?
    public var title: String?
    /// role → header (`code` → `编码`).
    public var columns: [String: String]

    public init(url: String, version: String? = nil, name: String? = nil, title: String? = nil, columns: [String: String] = [:]) {
        self.url = url
        self.version = version
        self.name = name
        self.title = title
        self.columns = columns
    }

    static let roles: Set<String> = ["code", "display", "parent", "zh", "en", "definition"]

    /// `--column role=header` arguments.
    public static func columns(_ arguments: [String]) throws(FHIRError) -> [String: String] {
        var columns: [String: String] = [:]
        for argument in arguments {
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, roles.contains(parts[0]) || (parts[0].hasPrefix("property:") && parts[0].count > 9) else {
                throw FHIRError(.invalid, code: "value", "--column takes ROLE=HEADER with ROLE one of \(roles.sorted().joined(separator: ", ")) "
                                + "or property:NAME, not '\(argument)'")
            }
            columns[parts[0]] = parts[1]
        }
        return columns
    }

    /// The CodeSystem of `text` (UTF-8 CSV with a header row; RFC 4180 quoting).
    public func codeSystem(_ text: String) throws(FHIRError) -> JSONObject {
        var rows = Self.parse(text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text)
        guard !rows.isEmpty else { throw FHIRError(.invalid, code: "required", "The CSV file is empty") }
        let header = rows.removeFirst().map { $0.trimmingCharacters(in: .whitespaces) }
        func column(_ role: String) throws(FHIRError) -> Int? {
            let name = columns[role] ?? role
            if let i = header.firstIndex(of: name) { return i }
            if columns[role] != nil {
                throw FHIRError(.invalid, code: "value", "The CSV has no column '\(name)' (for \(role)); its columns: \(header.joined(separator: ", "))")
            }
            return nil
        }
        guard let codeColumn = try column("code") else {
            throw FHIRError(.invalid, code: "required", "The CSV has no code column: name it 'code' or map it with --column code=HEADER")
        }
        let displayColumn = try column("display"), parentColumn = try column("parent"), definitionColumn = try column("definition")
        let zhColumn = try column("zh"), enColumn = try column("en")
        var propertyColumns: [(String, Int)] = []
        for role in columns.keys.sorted() where role.hasPrefix("property:") {
            if let i = try column(role) { propertyColumns.append((String(role.dropFirst(9)), i)) }
        }
        var concepts: [JSON] = []
        var seen: Set<String> = []
        var parents: [(line: Int, code: String, parent: String)] = []
        for (n, row) in rows.enumerated() {
            func cell(_ i: Int?) -> String? {
                guard let i, i < row.count else { return nil }
                let v = row[i].trimmingCharacters(in: .whitespaces)
                return v.isEmpty ? nil : v
            }
            guard let code = cell(codeColumn) else {
                if row.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
                throw FHIRError(.invalid, code: "required", "CSV line \(n + 2) has no code")
            }
            guard seen.insert(code).inserted else { throw FHIRError(.invalid, code: "duplicate", "CSV line \(n + 2): code '\(code)' comes twice") }
            var concept = JSONObject([("code", .string(code))])
            if let display = cell(displayColumn) ?? cell(zhColumn) ?? cell(enColumn) { concept["display"] = .string(display) }
            if let definition = cell(definitionColumn) { concept["definition"] = .string(definition) }
            var designations: [JSON] = []
            for (language, i) in [("zh-CN", zhColumn), ("en", enColumn)] {
                if let value = cell(i) { designations.append(.object(JSONObject([("language", .string(language)), ("value", .string(value))]))) }
            }
            if !designations.isEmpty { concept["designation"] = .array(designations) }
            var properties: [JSON] = []
            if let parent = cell(parentColumn) {
                properties.append(.object(JSONObject([("code", .string("parent")), ("valueCode", .string(parent))])))
                parents.append((n + 2, code, parent))
            }
            for (name, i) in propertyColumns {
                if let value = cell(i) { properties.append(.object(JSONObject([("code", .string(name)), ("valueString", .string(value))]))) }
            }
            if !properties.isEmpty { concept["property"] = .array(properties) }
            concepts.append(.object(concept))
        }
        try Self.checkHierarchy(parents, codes: seen)
        var cs = JSONObject([("resourceType", .string("CodeSystem")), ("url", .string(url))])
        if let version { cs["version"] = .string(version) }
        let fallback = url.split(separator: "/").last.map(String.init) ?? "CodeSystem"
        cs["name"] = .string(name ?? fallback.filter { $0.isLetter || $0.isNumber })
        if let title { cs["title"] = .string(title) }
        cs["status"] = .string("active")
        cs["content"] = .string("complete")
        if parentColumn != nil { cs["hierarchyMeaning"] = .string("is-a") }
        cs["count"] = .number(String(concepts.count))
        var declared: [JSON] = []
        if parentColumn != nil {
            declared.append(.object(JSONObject([("code", .string("parent")), ("uri", .string("http://hl7.org/fhir/concept-properties#parent")),
                                                ("type", .string("code"))])))
        }
        for (name, _) in propertyColumns { declared.append(.object(JSONObject([("code", .string(name)), ("type", .string("string"))]))) }
        if !declared.isEmpty { cs["property"] = .array(declared) }
        cs["concept"] = .array(concepts)
        return cs
    }

    /// A parent is a code of the table (R4: a `code` property names a concept of the code system),
    /// and no code is its own ancestor: every such line is reported, and nothing is loaded.
    static func checkHierarchy(_ parents: [(line: Int, code: String, parent: String)], codes: Set<String>) throws(FHIRError) {
        var issues = parents.filter { !codes.contains($0.parent) }.map {
            Issue(code: "not-found", "CSV line \($0.line): parent '\($0.parent)' of '\($0.code)' is not a code of the table")
        }
        // One parent per code (a code comes once): follow each chain up once, in linear time; a
        // chain that comes back to a code on it is a cycle, and every line on it is reported.
        var parentOf: [String: (line: Int, parent: String)] = [:]
        for p in parents { parentOf[p.code] = (p.line, p.parent) }
        var done: Set<String> = []
        for start in parents.map(\.code) where !done.contains(start) {
            var path: [String] = [], onPath: [String: Int] = [:]
            var next: String? = start
            while let code = next, !done.contains(code) {
                if let at = onPath[code] {
                    for c in path[at...] {
                        issues.append(Issue(code: "business-rule", "CSV line \(parentOf[c]!.line): '\(c)' is its own ancestor (the parent column has a cycle)"))
                    }
                    break
                }
                onPath[code] = path.count
                path.append(code)
                next = parentOf[code]?.parent
            }
            done.formUnion(path)
        }
        if !issues.isEmpty { throw FHIRError(.invalid, issues) }
    }

    static func parse(_ text: String) -> [[String]] { CSVTable.rows(text) }
}
