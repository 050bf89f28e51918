import FHIRModel
import Foundation
import Platform

/// A region's list as CSV (a header row, then one row per entry), read for the `huitong sharing`
/// loaders: each row's cells by column name, with its line number for the error that names it.
struct CSVList {
    struct Row {
        let line: Int
        let cells: [String]
        let at: [String: Int]

        subscript(_ name: String) -> String {
            guard let i = at[name], i < cells.count else { return "" }
            return cells[i].trimmingCharacters(in: .whitespaces)
        }
    }

    let rows: [Row]

    /// - Parameters:
    ///   - optional: columns that may be missing from the header (their cells read as empty).
    init(_ text: String, columns: [String], optional: Set<String> = [], what: String) throws(FHIRError) {
        let all = CSVTable.rows(text).filter { !$0.allSatisfy { $0.trimmingCharacters(in: .whitespaces).isEmpty } }
        guard let header = all.first?.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) else {
            throw FHIRError(.invalid, code: "required", "The \(what) is empty: a header \(columns.joined(separator: ",")) and one row per entry")
        }
        var at: [String: Int] = [:]
        for name in columns {
            guard let i = header.firstIndex(of: name) else {
                if optional.contains(name) { continue }
                throw FHIRError(.invalid, code: "required", "The header has no column '\(name)' (\(columns.joined(separator: ",")))", at: "line 1")
            }
            at[name] = i
        }
        rows = all.dropFirst().enumerated().map { Row(line: $0.offset + 2, cells: $0.element, at: at) }
    }

    /// Every row made into an entry, or, when any row is bad, every bad row's problems (nothing is
    /// taken half).
    func entries<T>(_ make: (Row, inout [String]) -> T?) throws(FHIRError) -> [T] {
        var out: [T] = [], problems: [Issue] = []
        for row in rows {
            var bad: [String] = []
            let entry = make(row, &bad)
            if bad.isEmpty, let entry {
                out.append(entry)
            } else {
                problems.append(Issue(code: "value", "line \(row.line): " + bad.joined(separator: "; "), at: "line \(row.line)"))
            }
        }
        guard problems.isEmpty else { throw FHIRError(.invalid, problems) }
        return out
    }
}
