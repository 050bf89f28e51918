/// One problem found in a request, in the shape of `OperationOutcome.issue`.
public struct Issue: Sendable, Equatable, Error, CustomStringConvertible {
    public enum Severity: String, Sendable { case fatal, error, warning, information }

    public let severity: Severity
    /// An `IssueType` code from http://hl7.org/fhir/R4/valueset-issue-type.html.
    public let code: String
    public let diagnostics: String
    /// FHIRPath locations of the offending element(s), e.g. `Observation.code.coding[0].system`.
    public let expression: [String]
    /// A finer code for `details.coding` (`system|code`), for clients that branch on the reason.
    public var details: (system: String, code: String)? {
        get { detailsCoding.map { ($0.system, $0.code) } }
        set { detailsCoding = newValue.map { Pair($0.system, $0.code) } }
    }
    private var detailsCoding: Pair?

    struct Pair: Sendable, Equatable {
        let system: String, code: String
        init(_ system: String, _ code: String) { self.system = system; self.code = code }
    }

    public init(_ severity: Severity = .error, code: String, _ diagnostics: String, at expression: String? = nil) {
        self.severity = severity
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression.map { [$0] } ?? []
    }

    public var description: String {
        expression.isEmpty ? diagnostics : "\(expression.joined(separator: ", ")): \(diagnostics)"
    }

    public var json: JSON {
        var o = JSONObject()
        o["severity"] = .string(severity.rawValue)
        o["code"] = .string(code)
        if let detailsCoding {
            o["details"] = .object(JSONObject([("coding", .array([.object(JSONObject([
                ("system", .string(detailsCoding.system)), ("code", .string(detailsCoding.code))]))]))]))
        }
        o["diagnostics"] = .string(diagnostics)
        if !expression.isEmpty {
            // `location` is deprecated in R4 but many clients still read it.
            o["location"] = .array(expression.map { .string($0) })
            o["expression"] = .array(expression.map { .string($0) })
        }
        return .object(o)
    }
}

/// Builds `OperationOutcome` resources.
public enum OperationOutcome {
    public static func make(_ issues: [Issue]) -> JSON {
        var o = JSONObject()
        o["resourceType"] = .string("OperationOutcome")
        o["issue"] = .array(issues.map(\.json))
        return .object(o)
    }

    public static func information(_ message: String) -> JSON {
        make([Issue(.information, code: "informational", message)])
    }
}
