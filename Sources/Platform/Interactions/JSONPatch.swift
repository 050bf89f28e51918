import Foundation
import FHIRModel

/// RFC 6902 JSON Patch applied to a resource (add, remove, replace, move, copy, test).
public enum JSONPatch {
    public static func apply(_ patch: JSON, to document: JSON) throws(FHIRError) -> JSON {
        guard case .array(let operations) = patch else {
            throw FHIRError(.invalid, code: "invalid", "A JSON Patch document must be an array of operations")
        }
        var doc = document
        // Values added or copied, in JSON nodes: `copy` can double the document with every
        // operation (a subtree into itself), so a patch of a few lines could ask for 2^40 nodes.
        var nodes = Self.nodes(in: document, upTo: maxNodes)
        func grow(by value: JSON, at: String) throws(FHIRError) {
            nodes += Self.nodes(in: value, upTo: maxNodes - min(nodes, maxNodes) + 1)
            if nodes > maxNodes {
                throw FHIRError(.businessRule, code: "too-costly", "The patched resource would exceed \(maxNodes) JSON values", at: at)
            }
        }
        for (i, op) in operations.enumerated() {
            let at = "patch[\(i)]"
            guard case .object(let o) = op, let name = o["op"]?.stringValue, let path = o["path"]?.stringValue else {
                throw FHIRError(.invalid, code: "invalid", "Each operation needs 'op' and 'path'", at: at)
            }
            let pointer = try parsePointer(path, at: at)
            switch name {
            case "add":
                guard let value = o["value"] else { throw FHIRError(.invalid, code: "invalid", "'add' needs 'value'", at: at) }
                try grow(by: value, at: at)
                doc = try modify(doc, pointer[...], at: at) { parent, last throws(FHIRError) in try insert(value, into: parent, key: last, replace: false, at: at) }
            case "remove":
                doc = try modify(doc, pointer[...], at: at) { parent, last throws(FHIRError) in try remove(from: parent, key: last, at: at) }
            case "replace":
                guard let value = o["value"] else { throw FHIRError(.invalid, code: "invalid", "'replace' needs 'value'", at: at) }
                try grow(by: value, at: at)
                doc = try modify(doc, pointer[...], at: at) { parent, last throws(FHIRError) in
                    try insert(value, into: try remove(from: parent, key: last, at: at), key: last, replace: false, at: at)
                }
            case "move", "copy":
                guard let from = o["from"]?.stringValue else { throw FHIRError(.invalid, code: "invalid", "'\(name)' needs 'from'", at: at) }
                let fromPointer = try parsePointer(from, at: at)
                let value = try get(doc, fromPointer, at: at)
                if name == "copy" { try grow(by: value, at: at) }
                if name == "move" {
                    doc = try modify(doc, fromPointer[...], at: at) { parent, last throws(FHIRError) in try remove(from: parent, key: last, at: at) }
                }
                doc = try modify(doc, pointer[...], at: at) { parent, last throws(FHIRError) in try insert(value, into: parent, key: last, replace: false, at: at) }
            case "test":
                guard let value = o["value"] else { throw FHIRError(.invalid, code: "invalid", "'test' needs 'value'", at: at) }
                guard try get(doc, pointer, at: at) == value else {
                    throw FHIRError(.businessRule, code: "processing", "JSON Patch test failed at \(path)", at: at)
                }
            default:
                throw FHIRError(.invalid, code: "invalid", "Unknown JSON Patch operation '\(name)'", at: at)
            }
        }
        return doc
    }

    /// The most JSON values a patch may add to a resource (well above any real resource).
    public static let maxNodes = 1_000_000

    /// The values in `json` (objects, arrays and scalars), counting no further than `limit`.
    static func nodes(in json: JSON, upTo limit: Int) -> Int {
        var count = 0
        var stack = [json]
        while let v = stack.popLast(), count < limit {
            count += 1
            switch v {
            case .object(let o): stack.append(contentsOf: o.members.map(\.value))
            case .array(let a): stack.append(contentsOf: a)
            default: break
            }
        }
        return count
    }

    static func parsePointer(_ path: String, at: String) throws(FHIRError) -> [String] {
        guard path.hasPrefix("/") else { throw FHIRError(.invalid, code: "invalid", "JSON Pointer '\(path)' must start with '/'", at: at) }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func get(_ doc: JSON, _ pointer: [String], at: String) throws(FHIRError) -> JSON {
        var current = doc
        for token in pointer {
            switch current {
            case .object(let o):
                guard let v = o[token] else { throw FHIRError(.businessRule, code: "processing", "Path member '\(token)' does not exist", at: at) }
                current = v
            case .array(let a):
                guard let i = Int(token), a.indices.contains(i) else { throw FHIRError(.businessRule, code: "processing", "Array index '\(token)' is out of range", at: at) }
                current = a[i]
            default:
                throw FHIRError(.businessRule, code: "processing", "Cannot descend into a \(current.kindName)", at: at)
            }
        }
        return current
    }

    /// Rebuilds `doc` with `change` applied to the parent of the pointer's last token.
    static func modify(_ doc: JSON, _ pointer: ArraySlice<String>, at: String,
                       _ change: (JSON, String) throws(FHIRError) -> JSON) throws(FHIRError) -> JSON {
        guard let first = pointer.first else { throw FHIRError(.invalid, code: "invalid", "The whole document cannot be patched", at: at) }
        if pointer.count == 1 { return try change(doc, first) }
        switch doc {
        case .object(var o):
            guard let child = o[first] else { throw FHIRError(.businessRule, code: "processing", "Path member '\(first)' does not exist", at: at) }
            o[first] = try modify(child, pointer.dropFirst(), at: at, change)
            return .object(o)
        case .array(var a):
            guard let i = Int(first), a.indices.contains(i) else { throw FHIRError(.businessRule, code: "processing", "Array index '\(first)' is out of range", at: at) }
            a[i] = try modify(a[i], pointer.dropFirst(), at: at, change)
            return .array(a)
        default:
            throw FHIRError(.businessRule, code: "processing", "Cannot descend into a \(doc.kindName)", at: at)
        }
    }

    static func insert(_ value: JSON, into parent: JSON, key: String, replace: Bool, at: String) throws(FHIRError) -> JSON {
        switch parent {
        case .object(var o):
            o[key] = value
            return .object(o)
        case .array(var a):
            if key == "-" { a.append(value); return .array(a) }
            guard let i = Int(key), i >= 0, i <= a.count else { throw FHIRError(.businessRule, code: "processing", "Array index '\(key)' is out of range", at: at) }
            a.insert(value, at: i)
            return .array(a)
        default:
            throw FHIRError(.businessRule, code: "processing", "Cannot add to a \(parent.kindName)", at: at)
        }
    }

    static func remove(from parent: JSON, key: String, at: String) throws(FHIRError) -> JSON {
        switch parent {
        case .object(var o):
            guard o[key] != nil else { throw FHIRError(.businessRule, code: "processing", "Path member '\(key)' does not exist", at: at) }
            o[key] = nil
            return .object(o)
        case .array(var a):
            guard let i = Int(key), a.indices.contains(i) else { throw FHIRError(.businessRule, code: "processing", "Array index '\(key)' is out of range", at: at) }
            a.remove(at: i)
            return .array(a)
        default:
            throw FHIRError(.businessRule, code: "processing", "Cannot remove from a \(parent.kindName)", at: at)
        }
    }
}
