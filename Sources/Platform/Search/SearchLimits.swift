import FHIRModel
import Foundation
import Store

/// What one search may ask for: sizes, names, values, depth (issue 25). A search beyond a limit
/// gets a 400 naming it, never a database error.
extension SearchQueryParser {
    /// Bounds on the size of one search, so that what a client asks for fits every store's limits
    /// (expression depth, terms of a compound SELECT) and answers in bounded time: a search that
    /// exceeds one gets a 400 naming it, never a database error.
    public static let maxClauses = 64
    public static let maxValuesPerParameter = 200
    public static let maxValues = 1_000
    public static let maxSortKeys = 8
    public static let maxIncludes = 32

    static func checkSize(_ query: SearchQuery) throws(FHIRError) {
        var clauses = 0, values = 0
        func count(_ q: SearchQuery) throws(FHIRError) {
            for clause in q.clauses {
                clauses += 1
                values += clause.values.count
                if clause.values.count > maxValuesPerParameter {
                    throw FHIRError(.invalid, code: "too-costly", "'\(clause.parameter)' has \(clause.values.count) values; a search parameter takes at most "
                                    + "\(maxValuesPerParameter) (search in several requests)", at: clause.parameter)
                }
                for v in clause.values {
                    switch v {
                    case .chain(let inner), .has(let inner, _): try count(inner)
                    default: continue
                    }
                }
            }
        }
        try count(query)
        if clauses > maxClauses {
            throw FHIRError(.invalid, code: "too-costly", "The search has \(clauses) parameters (chains and _has included); at most \(maxClauses) are accepted")
        }
        if values > maxValues {
            throw FHIRError(.invalid, code: "too-costly", "The search has \(values) values in all; at most \(maxValues) are accepted")
        }
    }

    /// The longest value a search parameter may have (bytes): longer than any code, name or
    /// identifier, far below what the stores' pattern matching accepts (SQLite LIKE: 50,000).
    public static let maxValueBytes = 4_096
    /// A parameter name's length, a chain's hops and `_has` nesting: bounds on what one search asks for.
    public static let maxNameBytes = 256
    public static let maxChainHops = 3
    public static let maxHasDepth = 3
    /// The largest `_offset` (beyond it, paging is by `_after`; it also keeps offset + count from overflowing).
    public static let maxOffset = 100_000_000

    /// A value no stored resource can match the way it was meant: a NUL (which no stored string
    /// holds, and which SQL pattern matching would cut the pattern at) or an overlong one.
    static func checkValue(_ name: String, _ value: String) throws(FHIRError) {
        // The name bounds the work a search asks for before it runs: each `.` is a chained hop and
        // each `_has:` a nested search, parsed recursively.
        if name.utf8.count > maxNameBytes {
            throw FHIRError(.invalid, code: "too-long", "A search parameter name is at most \(maxNameBytes) bytes long", at: String(name.prefix(64)))
        }
        if name.utf8.lazy.filter({ $0 == UInt8(ascii: ".") }).count > maxChainHops {
            throw FHIRError(.invalid, code: "too-costly", "A chain has at most \(maxChainHops) hops", at: name)
        }
        if name.containsBytes("_has:"), name.components(separatedBy: "_has:").count - 1 > maxHasDepth {
            throw FHIRError(.invalid, code: "too-costly", "_has nests at most \(maxHasDepth) deep", at: name)
        }
        if value.utf8.contains(0) {
            throw FHIRError(.invalid, code: "value", "The value of '\(name)' contains a NUL character", at: name)
        }
        if value.utf8.count > maxValueBytes {
            throw FHIRError(.invalid, code: "too-long", "The value of '\(name)' is \(value.utf8.count) bytes long; at most \(maxValueBytes) are accepted", at: name)
        }
    }
}
