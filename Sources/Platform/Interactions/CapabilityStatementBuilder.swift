import FHIRModel

/// Generates the server's CapabilityStatement from what is actually implemented:
/// the schema's resource types, the search-parameter registry and the interaction set.
public enum CapabilityStatementBuilder {
    public static let softwareVersion = "0.1.0"

    /// - Parameter development: `huitong serve --dev`, said in `implementation.description`.
    public static func build(baseURL: String, development: Bool = false, registry: SearchParameterRegistry = .r4,
                             schema: FHIRSchema = .r4, operations: OperationRegistry = .platform) -> JSON {
        let interactions = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
        var resources: [JSON] = []
        for type in schema.resourceTypeNames where !FHIRService.withoutEndpoint.contains(type) {
            var r = JSONObject()
            r["type"] = .string(type)
            // AuditEvents are recorded by the server: read and searched, never written by clients.
            let serverWritten = type == "AuditEvent"
            let offered = serverWritten ? ["read", "search-type"] : interactions
            r["interaction"] = .array(offered.map { .object(JSONObject([("code", .string($0))])) })
            if !serverWritten {
                r["versioning"] = .string("versioned-update")
                r["readHistory"] = .bool(true)
                r["updateCreate"] = .bool(true)
                r["conditionalCreate"] = .bool(true)
                r["conditionalUpdate"] = .bool(true)
                r["conditionalDelete"] = .string("single")
            }
            var params: [JSON] = [.object(JSONObject([("name", .string("_id")), ("type", .string("token"))]))]
            for p in registry.parameters(for: type) {
                params.append(.object(JSONObject([("name", .string(p.name)), ("type", .string(p.type.rawValue))])))
            }
            r["searchParam"] = .array(params)
            resources.append(.object(r))
        }
        // The operations registered (ADR 019): on each type they apply to at type or instance level.
        func entry(_ op: RegisteredOperation) -> JSON {
            .object(JSONObject([("name", .string(op.name)), ("definition", .string(op.definition)),
                                ("documentation", .string(op.documentation))]))
        }
        for (i, r) in resources.enumerated() {
            guard case .object(var o) = r, let type = o["type"]?.stringValue else { continue }
            let ops = operations.operations.filter { $0.applies(to: type, at: .type) || $0.applies(to: type, at: .instance) }
            if !ops.isEmpty { o["operation"] = .array(ops.map(entry)) }
            resources[i] = .object(o)
        }
        var rest = JSONObject()
        rest["mode"] = .string("server")
        rest["resource"] = .array(resources)
        rest["operation"] = .array(operations.operations.filter { $0.levels.contains(.system) }.map(entry))
        // SMART Backend Services: where tokens come from (the base URL minus `/fhir`).
        let server = baseURL.hasSuffix("/fhir") ? String(baseURL.dropLast(5)) : baseURL
        let oauth = JSONObject([("url", .string("http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris")),
                                ("extension", .array([.object(JSONObject([("url", .string("token")),
                                                                          ("valueUri", .string(server + "/auth/token"))]))]))])
        let service = JSONObject([("coding", .array([.object(JSONObject([
            ("system", .string("http://terminology.hl7.org/CodeSystem/restful-security-service")), ("code", .string("SMART-on-FHIR"))]))]))])
        rest["security"] = .object(JSONObject([
            ("extension", .array([.object(oauth)])), ("service", .array([.object(service)])),
            ("description", .string(development
                ? "DEVELOPMENT MODE (开发模式): requests without a token act as a development administrator; loopback only"
                : "OAuth2 client credentials (SMART Backend Services) with SMART v2 scopes; every request needs a bearer token")),
        ]))
        rest["interaction"] = .array(["transaction", "batch", "history-system"].map { .object(JSONObject([("code", .string($0))])) })
        var o = JSONObject()
        o["resourceType"] = .string("CapabilityStatement")
        o["status"] = .string("active")
        o["date"] = .string("2026-11-22")
        o["publisher"] = .string("Huitong")
        o["kind"] = .string("instance")
        o["software"] = .object(JSONObject([("name", .string("Huitong")), ("version", .string(softwareVersion))]))
        let description = "Huitong regional health information platform" + (development ? " — DEVELOPMENT MODE (开发模式)" : "")
        o["implementation"] = .object(JSONObject([("description", .string(description)), ("url", .string(baseURL))]))
        o["fhirVersion"] = .string("4.0.1")
        o["format"] = .array([.string("application/fhir+json"), .string("json")])
        o["patchFormat"] = .array([.string("application/json-patch+json")])
        o["rest"] = .array([.object(rest)])
        return .object(o)
    }
}
