import Access
import FHIRModel
import Store

/// `$validate` (R4 Resource-validate) at type and instance level: whether content would be
/// accepted, answered with an OperationOutcome, storing nothing.
/// - no `mode`: the content against R4's structure (elements, cardinality, primitives, narrative);
/// - `create`, `update` (instance level), `delete` (instance level): the same stages the write itself
///   would run in the write pipeline — authorization, stamping, validation, the rules on rows —
///   stopped before the commit. A refusal of the write becomes the OperationOutcome's issues; only
///   a caller who may not perform the interaction at all is refused the operation (403).
public struct ValidateOperation: Sendable {
    let service: FHIRService

    public init(service: FHIRService) { self.service = service }

    /// The modes R4 defines that this server checks (`profile` needs profiles, which it does not hold).
    public static let modes = ["create", "update", "delete"]
    static let advising = ResourceValidator(advice: true)

    public func run(type: String, id: String?, body: JSON?, mode queryMode: String?) async throws -> JSON {
        guard FHIRSchema.r4.isResourceType(type) else { throw FHIRError(.notFound, code: "not-supported", "Unknown resource type '\(type)'") }
        var resource = body
        var mode = queryMode
        // The resource as the body, or inside Parameters (`resource`, `mode`, `profile`).
        if let body, body["resourceType"]?.stringValue == "Parameters",
           let parameters = body["parameter"]?.arrayValue, parameters.contains(where: { $0["name"]?.stringValue == "resource" }) {
            resource = nil
            for parameter in parameters {
                switch parameter["name"]?.stringValue {
                case "resource": resource = parameter["resource"]
                case "mode": mode = parameter["valueCode"]?.stringValue ?? parameter["valueString"]?.stringValue
                case "profile":
                    throw FHIRError(.invalid, code: "not-supported", "Validation against a profile is not supported: this server holds no profiles", at: "Parameters.parameter")
                default: continue
                }
            }
        }
        if let mode, !Self.modes.contains(mode) {
            throw FHIRError(.invalid, code: "not-supported", "$validate mode '\(mode)' is not supported (create, update, delete; or none for the content only)", at: "mode")
        }
        if mode != "delete" && resource == nil {
            throw FHIRError(.invalid, code: "required", "$validate needs the resource, as the body or as the 'resource' parameter", at: "resource")
        }
        if let resource, let actual = resource["resourceType"]?.stringValue, actual != type {
            return OperationOutcome.make([Issue(code: "invalid", "Resource type '\(actual)' does not match the endpoint type '\(type)'", at: type)])
        }
        // Codes outside extensible and preferred bindings: warnings of $validate only (a write is not refused for them).
        let advice = resource.map { Self.advising.validate($0).filter { $0.severity == .warning } } ?? []
        guard let mode else {
            let issues = service.pipeline.validator.validate(resource!) + advice
            return issues.isEmpty ? OperationOutcome.information("No issues: the \(type) is valid R4 content") : OperationOutcome.make(issues)
        }
        let request: WriteRequest
        let interaction: Interaction
        switch mode {
        case "create":
            request = WriteRequest(key: ResourceKey(type, IngestPipeline.newID()), method: "POST", resource: resource!)
            interaction = .create
        default:
            guard let id else { throw FHIRError(.invalid, code: "required", "$validate mode '\(mode)' is asked of an instance: \(type)/[id]/$validate", at: "mode") }
            if mode == "delete" {
                request = .delete(ResourceKey(type, id))
                interaction = .delete
            } else {
                if let bodyID = resource?["id"]?.stringValue, bodyID != id {
                    return OperationOutcome.make([Issue(code: "invalid", "Resource id '\(bodyID)' does not match the URL id '\(id)'", at: "\(type).id")])
                }
                request = WriteRequest(key: ResourceKey(type, id), method: "PUT", resource: resource!)
                interaction = .update
            }
        }
        // Who may not perform the interaction at all is refused the question (403, audited).
        try await service.authorize(interaction, type)
        do {
            _ = try await service.writePipeline.check([request], as: interaction)
        } catch let error as FHIRError where !error.category.isServerFault {
            // What the write would have been refused for.
            return OperationOutcome.make(error.issues + advice)
        }
        return advice.isEmpty ? OperationOutcome.information("No issues: the \(type) would be accepted as a \(mode)")
            : OperationOutcome.make(advice + [Issue(.information, code: "informational", "The \(type) would be accepted as a \(mode)")])
    }
}
