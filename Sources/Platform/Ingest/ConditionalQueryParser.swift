import FHIRModel
import Store

/// Turns the query part of a conditional interaction (`identifier=sys|val&_id=1`)
/// into a `ConditionalQuery`. Parameters it cannot evaluate exactly are refused:
/// guessing would make a conditional write hit the wrong resource.
public struct ConditionalQueryParser: Sendable {
    let registry: SearchParameterRegistry

    public init(registry: SearchParameterRegistry = .r4) {
        self.registry = registry
    }

    public func parse(type: String, query: String) throws(FHIRError) -> ConditionalQuery {
        var clauses: [ConditionalQuery.Clause] = []
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]))
            let rawValue = parts.count > 1 ? percentDecode(String(parts[1])) : ""
            if ["_format", "_pretty", "_summary", "_elements", "_count"].contains(name) { continue }
            let values = splitValues(rawValue)
            guard !values.isEmpty else {
                throw FHIRError(400, code: "invalid", "Search parameter '\(name)' has no value")
            }
            if name == "_id" {
                clauses.append(.init(parameter: "_id", values: values.map { .id($0) }))
                continue
            }
            guard let parameter = registry.parameter(name, for: type) else {
                throw FHIRError(400, code: "not-supported", "Search parameter '\(name)' is not supported for \(type) in conditional interactions")
            }
            let matches: [ConditionalQuery.Match] = values.map { value in
                switch parameter.type {
                case .token:
                    if let bar = value.firstIndex(of: "|") {
                        let system = String(value[..<bar]), code = String(value[value.index(after: bar)...])
                        return .token(system: system, code: code.isEmpty ? nil : code)
                    }
                    return .token(system: nil, code: value)
                case .reference:
                    if case .relative(let t, let id, _) = ReferenceSyntax.parse(value) { return .reference(type: t, id: id) }
                    return .reference(type: nil, id: value)
                case .uri:
                    return .uri(value)
                default:
                    return .stringPrefix(StringNormalizer.normalize(value))
                }
            }
            if parameter.type == .date || parameter.type == .number || parameter.type == .quantity {
                throw FHIRError(400, code: "not-supported", "Search parameter '\(name)' (\(parameter.type.rawValue)) is not supported in conditional interactions yet")
            }
            clauses.append(.init(parameter: name, values: matches))
        }
        guard !clauses.isEmpty else {
            throw FHIRError(412, code: "invalid", "A conditional interaction needs at least one search parameter")
        }
        return ConditionalQuery(type: type, clauses: clauses)
    }

    /// Splits on commas not escaped with a backslash, unescaping `\,`, `\|`, `\$`, `\\`.
    func splitValues(_ s: String) -> [String] {
        var result: [String] = []
        var current = ""
        var escaped = false
        for c in s {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" { escaped = true; continue }
            if c == "," { if !current.isEmpty { result.append(current) }; current = ""; continue }
            current.append(c)
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query component.
public func percentDecode(_ s: String) -> String {
    guard s.contains("%") || s.contains("+") else { return s }
    var bytes: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "+") {
            bytes.append(0x20)
        } else if b == UInt8(ascii: "%"), it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
            bytes.append(v)
            it = it.dropFirst(2)
        } else {
            bytes.append(b)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
