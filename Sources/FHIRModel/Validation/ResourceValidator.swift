/// Checks a resource against the R4 structure: known type, known elements, cardinality,
/// required elements, one type per choice element, primitive formats and reference syntax.
/// It reports *every* problem with its FHIRPath location rather than stopping at the first.
public struct ResourceValidator: Sendable {
    public let schema: FHIRSchema

    public init(schema: FHIRSchema = .r4) {
        self.schema = schema
    }

    /// All problems in `resource`; empty when valid.
    public func validate(_ resource: JSON) -> [Issue] {
        var issues: [Issue] = []
        validateResource(resource, path: nil, issues: &issues)
        return issues
    }

    private func validateResource(_ value: JSON, path: String?, issues: inout [Issue]) {
        guard case .object(let object) = value else {
            issues.append(Issue(code: "structure", "A resource must be a JSON object, found \(value.kindName)", at: path))
            return
        }
        guard let typeName = object["resourceType"]?.stringValue else {
            issues.append(Issue(code: "structure", "Missing 'resourceType'", at: path))
            return
        }
        let here = path ?? typeName
        guard let definition = schema.types[typeName], definition.kind == .resource else {
            issues.append(Issue(code: "not-supported", "Unknown resource type '\(typeName)'", at: here))
            return
        }
        if let id = object["id"], let s = id.stringValue, !FHIRPrimitive.isValidID(s) {
            issues.append(Issue(code: "value", "'\(s)' is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')", at: "\(here).id"))
            return validateObject(object.removing("id"), definition: definition, path: here, issues: &issues)
        }
        validateObject(object, definition: definition, path: here, issues: &issues)
    }

    private func validateObject(_ object: JSONObject, definition: FHIRSchema.TypeDefinition, path: String, issues: inout [Issue]) {
        if object.isEmpty {
            issues.append(Issue(code: "structure", "Empty object: an element must have a value or children", at: path))
            return
        }
        var choicesSeen: [String: String] = [:]
        for (key, value) in object {
            if key == "resourceType" && definition.kind == .resource { continue }
            if key.hasPrefix("_") {
                validatePrimitiveExtension(String(key.dropFirst()), value, in: object, definition: definition, path: path, issues: &issues)
                continue
            }
            guard let (element, type) = definition.members[key] else {
                issues.append(Issue(code: "structure", "Unknown element '\(key)' in \(definition.name)", at: "\(path).\(key)"))
                continue
            }
            if element.isChoice {
                if let other = choicesSeen[element.baseName] {
                    issues.append(Issue(code: "structure", "Only one of '\(other)' and '\(key)' may be present (\(element.name) takes one type)", at: "\(path).\(key)"))
                }
                choicesSeen[element.baseName] = key
            }
            let hasExtension = object["_" + key] != nil
            validateElement(value, element: element, type: type, path: "\(path).\(key)", primitiveExtensionPresent: hasExtension, issues: &issues)
        }
        for element in definition.elements where element.min > 0 {
            let present: Bool
            if element.isChoice {
                present = element.types.contains { object[element.baseName + FHIRSchema.upperFirst($0)] != nil || object["_" + element.baseName + FHIRSchema.upperFirst($0)] != nil }
            } else {
                present = object[element.name] != nil || object["_" + element.name] != nil
            }
            if !present {
                let shown = element.isChoice ? element.name : element.name
                issues.append(Issue(code: "required", "Missing required element '\(shown)' (minimum cardinality \(element.min))", at: "\(path).\(element.baseName)"))
            }
        }
    }

    private func validateElement(_ value: JSON, element: FHIRSchema.Element, type: String, path: String,
                                 primitiveExtensionPresent: Bool, issues: inout [Issue]) {
        if element.isArray {
            guard case .array(let items) = value else {
                issues.append(Issue(code: "structure", "'\(element.name)' repeats and must be a JSON array, found \(value.kindName)", at: path))
                return
            }
            if items.isEmpty {
                issues.append(Issue(code: "structure", "Empty array: omit the element instead", at: path))
            }
            for (i, item) in items.enumerated() {
                if case .null = item, primitiveExtensionPresent, FHIRPrimitive(typeName: type) != nil { continue }
                validateValue(item, type: type, path: "\(path)[\(i)]", issues: &issues)
            }
        } else {
            if case .array = value {
                issues.append(Issue(code: "structure", "'\(element.name)' does not repeat and must not be an array", at: path))
                return
            }
            validateValue(value, type: type, path: path, issues: &issues)
        }
    }

    private func validateValue(_ value: JSON, type: String, path: String, issues: inout [Issue]) {
        if case .null = value {
            issues.append(Issue(code: "structure", "null is not allowed: omit the element instead", at: path))
            return
        }
        if let primitive = FHIRPrimitive(typeName: type) {
            if let problem = primitive.problem(with: value) {
                issues.append(Issue(code: "value", "Invalid \(type): \(problem)", at: path))
            }
            return
        }
        if type == "Resource" {
            validateResource(value, path: path, issues: &issues)
            return
        }
        guard let definition = schema.types[type] else { return }
        guard case .object(let object) = value else {
            issues.append(Issue(code: "structure", "\(type) must be a JSON object, found \(value.kindName)", at: path))
            return
        }
        validateObject(object, definition: definition, path: path, issues: &issues)
        if type == "Reference", let reference = object["reference"]?.stringValue, let problem = ReferenceSyntax.problem(reference) {
            issues.append(Issue(code: "value", problem, at: "\(path).reference"))
        }
    }

    private func validatePrimitiveExtension(_ name: String, _ value: JSON, in object: JSONObject,
                                            definition: FHIRSchema.TypeDefinition, path: String, issues: inout [Issue]) {
        let location = "\(path)._\(name)"
        guard let (element, type) = definition.members[name], FHIRPrimitive(typeName: type) != nil else {
            issues.append(Issue(code: "structure", "'_\(name)' does not belong to a primitive element of \(definition.name)", at: location))
            return
        }
        guard let elementDefinition = schema.types["Element"] else { return }
        func check(_ v: JSON, _ at: String) {
            guard case .object(let o) = v else {
                issues.append(Issue(code: "structure", "Primitive extension must be an object, found \(v.kindName)", at: at))
                return
            }
            validateObject(o, definition: elementDefinition, path: at, issues: &issues)
        }
        if element.isArray {
            guard case .array(let items) = value else {
                issues.append(Issue(code: "structure", "'_\(name)' must be an array like '\(name)'", at: location))
                return
            }
            for (i, item) in items.enumerated() where item != .null { check(item, "\(location)[\(i)]") }
        } else {
            check(value, location)
        }
    }
}

extension JSONObject {
    func removing(_ key: String) -> JSONObject {
        var copy = self
        copy[key] = nil
        return copy
    }
}
