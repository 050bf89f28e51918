/// A JSON value that keeps what FHIR needs and generic JSON libraries lose:
/// object member order (so stored content reads back as written) and the exact
/// lexical form of numbers (FHIR decimals are precise: `1.50` must stay `1.50`).
public enum JSON: Sendable, Equatable, ExpressibleByStringLiteral {
    case null
    case bool(Bool)
    /// The number's text exactly as it appeared in the input.
    case number(String)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    public init(stringLiteral value: String) { self = .string(value) }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var numberText: String? {
        if case .number(let n) = self { return n }
        return nil
    }

    /// Member of an object, or nil for a missing member or a non-object.
    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// A short name for the kind of value, for error messages.
    /// The i-th element of an array (nil past the end or for a non-array).
    public subscript(_ i: Int) -> JSON? {
        guard let a = arrayValue, i >= 0, i < a.count else { return nil }
        return a[i]
    }

    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// An ordered JSON object. FHIR resources have a few dozen members at most,
/// so a linear scan beats hashing and keeps insertion order for free.
public struct JSONObject: Sendable, Equatable, Sequence {
    public private(set) var members: [(key: String, value: JSON)]

    public init() { members = [] }

    public init(_ members: [(String, JSON)]) {
        self.members = members.map { (key: $0.0, value: $0.1) }
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    public subscript(key: String) -> JSON? {
        get {
            for m in members where m.key == key { return m.value }
            return nil
        }
        set {
            if let i = members.firstIndex(where: { $0.key == key }) {
                if let newValue { members[i].value = newValue } else { members.remove(at: i) }
            } else if let newValue {
                members.append((key: key, value: newValue))
            }
        }
    }

    /// Replaces the value of the member at `index` (of `members`).
    public mutating func replaceValue(at index: Int, with value: JSON) {
        members[index].value = value
    }

    /// Sets `key`, placing a new member at `index` (used to keep `resourceType`, `id`, `meta` first).
    public mutating func set(_ key: String, _ value: JSON, insertingAt index: Int) {
        if let i = members.firstIndex(where: { $0.key == key }) {
            members[i].value = value
        } else {
            members.insert((key: key, value: value), at: Swift.min(index, members.count))
        }
    }

    /// Appends without checking for an existing key; callers guarantee uniqueness.
    mutating func appendUnchecked(_ key: String, _ value: JSON) {
        members.append((key: key, value: value))
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSON)]> {
        members.makeIterator()
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (l, r) in zip(lhs.members, rhs.members) where l.key != r.key || l.value != r.value {
            return false
        }
        return true
    }
}
