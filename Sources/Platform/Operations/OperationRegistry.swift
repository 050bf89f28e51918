import Access
import FHIRModel
import NIOCore

/// A FHIR operation as the platform offers it (`$everything`, `$match`, `$validate`, …): registered
/// once with its name, levels, resource types, parameters, access decision and handler. The HTTP
/// layer dispatches to it, the CapabilityStatement lists it and its `OperationDefinition` is
/// generated from it, so a domain module adds an operation without touching HTTP (ADR 019).
public struct RegisteredOperation: Sendable {
    public enum Level: String, Sendable, CaseIterable { case system, type, instance }

    /// One input or output parameter, as `OperationDefinition.parameter` describes it.
    public struct Parameter: Sendable {
        public enum Use: String, Sendable { case `in`, out }
        public let name: String
        public let use: Use
        public let min: Int
        /// "1" or "*".
        public let max: String
        /// A FHIR type name (`string`, `Resource`, `Bundle`, …).
        public let type: String?
        public let documentation: String

        public init(_ name: String, _ use: Use, min: Int = 0, max: String = "1", type: String?, _ documentation: String) {
            self.name = name
            self.use = use
            self.min = min
            self.max = max
            self.type = type
            self.documentation = documentation
        }
    }

    /// The operation's name without `$`.
    public let name: String
    /// Resource types it applies to at type and instance level (empty: every type).
    public let resourceTypes: [String]
    public let levels: Set<Level>
    /// Changes nothing: may be invoked with GET.
    public let allowsGet: Bool
    /// Changes data (`OperationDefinition.affectsState`).
    public let affectsState: Bool
    public let title: String
    public let documentation: String
    public let parameters: [Parameter]
    /// The canonical URL of the definition it implements (HL7's or IHE's where there is one).
    public let definition: String
    /// The access decision made before the handler runs (refusals audited): an interaction and the
    /// type it is asked on (`.operation("match")` on Patient). The handler decides on rows.
    public let access: @Sendable (OperationRequest) -> (interaction: Interaction, type: String?)
    public let handler: @Sendable (FHIRService, OperationRequest) async throws -> OperationResult

    public init(name: String, resourceTypes: [String], levels: Set<Level>, allowsGet: Bool, affectsState: Bool, title: String,
                documentation: String, parameters: [Parameter], definition: String? = nil,
                access: @escaping @Sendable (OperationRequest) -> (interaction: Interaction, type: String?),
                handler: @escaping @Sendable (FHIRService, OperationRequest) async throws -> OperationResult) {
        self.name = name
        self.resourceTypes = resourceTypes
        self.levels = levels
        self.allowsGet = allowsGet
        self.affectsState = affectsState
        self.title = title
        self.documentation = documentation
        self.parameters = parameters
        self.definition = definition ?? OperationRegistry.canonicalBase + Self.id(name, resourceTypes)
        self.access = access
        self.handler = handler
    }

    /// This server's id of its generated OperationDefinition (`Patient-everything`, `validate`).
    public var id: String { Self.id(name, resourceTypes) }

    static func id(_ name: String, _ types: [String]) -> String { types.count == 1 ? "\(types[0])-\(name)" : name }

    public func applies(to type: String?, at level: Level) -> Bool {
        guard levels.contains(level) else { return false }
        guard let type else { return level == .system }
        return resourceTypes.isEmpty || resourceTypes.contains(type)
    }

    /// The generated `OperationDefinition` resource.
    public func operationDefinition() -> JSON {
        var o = JSONObject()
        o["resourceType"] = .string("OperationDefinition")
        o["id"] = .string(id)
        o["url"] = .string(OperationRegistry.canonicalBase + id)
        o["name"] = .string(name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined())
        o["title"] = .string(title)
        o["status"] = .string("active")
        o["kind"] = .string("operation")
        o["description"] = .string(documentation)
        o["affectsState"] = .bool(affectsState)
        o["code"] = .string(name)
        if definition != OperationRegistry.canonicalBase + id { o["base"] = .string(definition) }
        if !resourceTypes.isEmpty { o["resource"] = .array(resourceTypes.map { .string($0) }) }
        o["system"] = .bool(levels.contains(.system))
        o["type"] = .bool(levels.contains(.type))
        o["instance"] = .bool(levels.contains(.instance))
        o["parameter"] = .array(parameters.map { p in
            var m = JSONObject([("name", .string(p.name)), ("use", .string(p.use.rawValue)), ("min", .number(String(p.min))),
                                ("max", .string(p.max)), ("documentation", .string(p.documentation))])
            if let type = p.type { m["type"] = .string(type) }
            return .object(m)
        })
        return .object(o)
    }
}

/// How an operation was asked: where, on what, with which parameters.
public struct OperationRequest: Sendable {
    public let name: String
    public let level: RegisteredOperation.Level
    public let type: String?
    public let id: String?
    /// URL parameters, decoded, in order (GET's parameters; a POST's URL query).
    public let parameters: [(String, String)]
    /// The raw URL query, for the Bundle's `self` link.
    public let query: String?
    /// A POST's body: Parameters, or a resource where the operation takes one.
    public let body: JSON?
    /// The server's base URL (`https://host/fhir`), for full URLs and links.
    public let baseURL: String

    public init(name: String, level: RegisteredOperation.Level, type: String?, id: String?, parameters: [(String, String)],
                query: String?, body: JSON?, baseURL: String) {
        self.name = name
        self.level = level
        self.type = type
        self.id = id
        self.parameters = parameters
        self.query = query
        self.body = body
        self.baseURL = baseURL
    }

    /// A URL parameter's first value.
    public func parameter(_ name: String) -> String? { parameters.first { $0.0 == name }?.1 }

    /// A URL parameter that must be a non-negative integer when present (anything else is refused).
    public func integer(_ name: String) throws(FHIRError) -> Int? { try Self.nonNegative(name, parameter(name)) }

    /// A paging parameter's value: absent, or a non-negative integer (anything else is refused, never ignored).
    public static func nonNegative(_ name: String, _ raw: String?) throws(FHIRError) -> Int? {
        guard let raw else { return nil }
        guard let n = Int(raw), n >= 0 else { throw FHIRError(.invalid, code: "value", "\(name) must be a non-negative integer, not '\(raw)'", at: name) }
        return n
    }

    /// The operation's path below the base (`Patient/p1/$everything`).
    public var path: String { [type, id].compactMap { $0 }.map { $0 + "/" }.joined() + "$" + name }
}

/// What an operation answers.
public enum OperationResult: Sendable {
    /// A resource (Parameters, OperationOutcome, …).
    case resource(JSON)
    /// A Bundle written around stored resources (`BundleWriter`).
    case bundle([UInt8])
    /// Another format a caller asked for (`_format=csv`): the text and its content type.
    case text(String, contentType: String)
}

/// The operations a server offers, by name (ADR 019). Built once at start: the platform's own
/// (`OperationRegistry.platform`), then the domain modules'.
public struct OperationRegistry: Sendable {
    public static let canonicalBase = "https://huitong.health/fhir/OperationDefinition/"

    public private(set) var operations: [RegisteredOperation] = []

    public init(_ operations: [RegisteredOperation] = []) {
        for operation in operations { register(operation) }
    }

    /// Adds an operation; a name already registered for an overlapping type and level is a
    /// programming error (one handler per operation).
    public mutating func register(_ operation: RegisteredOperation) {
        let clash = operations.contains { other in
            other.name == operation.name && !other.levels.isDisjoint(with: operation.levels)
                && (other.resourceTypes.isEmpty || operation.resourceTypes.isEmpty || !Set(other.resourceTypes).isDisjoint(with: operation.resourceTypes))
        }
        precondition(!clash, "operation $\(operation.name) is registered twice for the same type and level")
        operations.append(operation)
    }

    public func find(_ name: String, type: String?, at level: RegisteredOperation.Level) -> RegisteredOperation? {
        operations.first { $0.name == name && $0.applies(to: type, at: level) }
    }

    /// The generated OperationDefinition with this id, if it is one of ours.
    public func definition(id: String) -> JSON? {
        operations.first { $0.id == id }?.operationDefinition()
    }

    /// Runs an operation for the service's principal: finds it (404 for an unknown one or one that
    /// changes state asked by GET), asks the access decision, then calls the handler.
    public func invoke(_ request: OperationRequest, get: Bool, service: FHIRService) async throws -> OperationResult {
        let where_ = request.type.map { "\($0)/" } ?? ""
        guard let operation = find(request.name, type: request.type, at: request.level) else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown operation '\(where_)\(request.level == .instance ? "[id]/" : "")$\(request.name)'")
        }
        if get && !operation.allowsGet {
            throw FHIRError(.notAllowed, code: "not-supported", "$\(request.name) is invoked with POST")
        }
        if let type = request.type { try service.checkOperationType(type) }
        let decision = operation.access(request)
        try await service.authorize(decision.interaction, decision.type)
        return try await operation.handler(service, request)
    }
}
