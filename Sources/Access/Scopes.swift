/// What a SMART scope permits on a resource type: SMART App Launch v2's `c r u d s`
/// (create, read, update, delete, search).
public struct Permissions: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let create = Permissions(rawValue: 1)
    public static let read = Permissions(rawValue: 2)
    public static let update = Permissions(rawValue: 4)
    public static let delete = Permissions(rawValue: 8)
    public static let search = Permissions(rawValue: 16)
    public static let all: Permissions = [.create, .read, .update, .delete, .search]

    /// The v2 letters in canonical order (`cruds`).
    public var letters: String {
        [(Permissions.create, "c"), (.read, "r"), (.update, "u"), (.delete, "d"), (.search, "s")]
            .filter { contains($0.0) }.map(\.1).joined()
    }
}

/// One SMART scope for FHIR resources: `system/Observation.rs`, `user/*.cruds`, `patient/*.rs`
/// (v2), or the v1 forms `.read` (= rs), `.write` (= cud) and `.*` (= cruds).
public struct SMARTScope: Hashable, Sendable, CustomStringConvertible {
    /// Whose data the scope reaches: one resident's (`patient`), what a person may see (`user`),
    /// or a facility system's (`system`).
    public enum Context: String, Sendable { case patient, user, system }

    public let context: Context
    /// A resource type, or `*` for all.
    public let resourceType: String
    public let permissions: Permissions

    public init(_ context: Context, _ resourceType: String, _ permissions: Permissions) {
        self.context = context
        self.resourceType = resourceType
        self.permissions = permissions
    }

    /// Parses one scope; nil for anything that is not a resource scope (`openid`, `launch`, a
    /// v2 scope with search constraints `?...`, which this server does not grant, or nonsense).
    public init?(_ text: some StringProtocol) {
        guard let slash = text.firstIndex(of: "/"), let dot = text.lastIndex(of: "."), slash < dot,
              let context = Context(rawValue: String(text[..<slash])) else { return nil }
        let type = String(text[text.index(after: slash)..<dot])
        let rest = text[text.index(after: dot)...]
        guard !type.isEmpty, type == "*" || type.allSatisfy({ $0.isLetter }) else { return nil }
        var permissions: Permissions
        switch rest {
        case "read": permissions = [.read, .search]
        case "write": permissions = [.create, .update, .delete]
        case "*": permissions = .all
        default:
            // v2 letters must appear at most once and in the order c, r, u, d, s.
            permissions = []
            var last = -1
            for ch in rest {
                guard let i = Array("cruds").firstIndex(of: ch), i > last else { return nil }
                last = i
                permissions.insert(Permissions(rawValue: 1 << UInt8(i)))
            }
            if permissions.isEmpty { return nil }
        }
        self.init(context, type, permissions)
    }

    public var description: String { "\(context.rawValue)/\(resourceType).\(permissions.letters)" }

    /// Parses a space-separated scope string, keeping the resource scopes it understands.
    public static func parseList(_ text: String) -> [SMARTScope] {
        text.split(separator: " ").compactMap { SMARTScope($0) }
    }

    public static func format(_ scopes: [SMARTScope]) -> String {
        scopes.map(\.description).joined(separator: " ")
    }
}
