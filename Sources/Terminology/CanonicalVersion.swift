import FHIRModel

/// The order of a code system's or value set's versions, to find the newest when a request names
/// none: numeric parts compare as numbers ("9" before "10", "2019-1" before "2019-12"), other parts
/// as text, and a version that is a prefix of another comes first ("4.0" before "4.0.1").
enum CanonicalVersion {
    static func precedes(_ a: String, _ b: String) -> Bool {
        let x = parts(a), y = parts(b)
        for (p, q) in zip(x, y) where p != q {
            if let m = Int(p), let n = Int(q) { return m < n }
            if Int(p) != nil { return true }    // a number before a word ("1" before "beta")
            if Int(q) != nil { return false }
            return p < q
        }
        return x.count < y.count
    }

    static func parts(_ version: String) -> [Substring] {
        version.split { !($0.isLetter || $0.isNumber) }
    }
}

extension Array where Element == ConceptEntry {
    /// The entry of the newest version.
    var newest: ConceptEntry? { self.max { CanonicalVersion.precedes($0.version, $1.version) } }
}
