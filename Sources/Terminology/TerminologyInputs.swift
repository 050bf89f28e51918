import Access
import FHIRModel
import NIOCore
import Platform

/// An operation's inputs as R4's terminology operations take them: URL parameters (GET, or a
/// POST's query) and the members of a `Parameters` body, by name; a `Coding` input (`coding`,
/// `codingA`) stands for its system, code, version and display.
struct TerminologyInputs {
    private var strings: [(String, String)] = []
    private var codings: [(String, JSONObject)] = []
    private var concepts: [(String, JSONObject)] = []

    init(_ request: OperationRequest) throws(FHIRError) {
        strings = request.parameters
        guard let body = request.body else { return }
        guard body["resourceType"]?.stringValue == "Parameters" else {
            throw FHIRError(.invalid, code: "structure", "The body of $\(request.name) is a Parameters resource", at: "Parameters")
        }
        for (i, p) in (body["parameter"]?.arrayValue ?? []).enumerated() {
            guard case .object(let o) = p, let name = o["name"]?.stringValue else { continue }
            for (key, value) in o where key.hasPrefix("value") {
                switch value {
                case .string(let s): strings.append((name, s))
                case .bool(let b): strings.append((name, b ? "true" : "false"))
                case .number(let n): strings.append((name, n))
                case .object(let v) where key == "valueCoding": codings.append((name, v))
                case .object(let v) where key == "valueCodeableConcept": concepts.append((name, v))
                default:
                    throw FHIRError(.invalid, code: "value", "Parameter '\(name)' has a value of an unexpected type (\(key))",
                                    at: "Parameters.parameter[\(i)]")
                }
            }
        }
    }

    func string(_ name: String) -> String? { strings.first { $0.0 == name }?.1 }
    func strings(_ name: String) -> [String] { strings.filter { $0.0 == name }.flatMap { $0.1.split(separator: ",").map(String.init) } }
    func coding(_ name: String) -> JSONObject? { codings.first { $0.0 == name }?.1 }
    func codeableConcept(_ name: String) -> JSONObject? { concepts.first { $0.0 == name }?.1 }

    func bool(_ name: String) throws(FHIRError) -> Bool? {
        guard let raw = string(name) else { return nil }
        switch raw {
        case "true": return true
        case "false": return false
        default: throw FHIRError(.invalid, code: "value", "\(name) is true or false, not '\(raw)'", at: name)
        }
    }

    /// A code with its system: from `codeName` + `system` (+ `version`, `display`), or from the
    /// Coding parameter `codingName`; `defaultSystem` (an instance's url) fills a missing system.
    func code(_ codeName: String, coding codingName: String, defaultSystem: String?, operation: String) throws(FHIRError) -> CodeInputValue {
        if let coding = coding(codingName) {
            guard let system = coding["system"]?.stringValue ?? defaultSystem, let code = coding["code"]?.stringValue else {
                throw FHIRError(.invalid, code: "required", "$\(operation): \(codingName) needs a system and a code", at: codingName)
            }
            return CodeInputValue(system: system, code: code, version: coding["version"]?.stringValue ?? string("version"),
                             display: coding["display"]?.stringValue)
        }
        guard let code = string(codeName) else {
            throw FHIRError(.invalid, code: "required", "$\(operation) needs \(codeName) (with system) or \(codingName)", at: codeName)
        }
        guard let system = string("system") ?? string("url") ?? defaultSystem else {
            throw FHIRError(.invalid, code: "required", "$\(operation) needs the system of code '\(code)'", at: "system")
        }
        return CodeInputValue(system: system, code: code, version: string("version"), display: string("display"))
    }
}


extension JSONObject {
    /// A `Parameters.parameter` member.
    static func parameter(_ name: String, _ valueKey: String, _ value: JSON) -> JSON {
        .object(JSONObject([("name", .string(name)), (valueKey, value)]))
    }

    static func parameter(_ name: String, parts: [JSON]) -> JSON {
        .object(JSONObject([("name", .string(name)), ("part", .array(parts))]))
    }

    /// A `Parameters` resource with these members.
    static func parameters(_ members: [JSON]) -> JSON {
        .object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array(members))]))
    }
}
