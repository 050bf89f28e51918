import Access
import FHIRModel
import NIOCore
import Platform
import Store

/// The terminology operations (ADR 022), registered like any domain's (ADR 019). Terminology is
/// not patient data: each is decided as a read of the type it is asked on.
extension OperationRegistry {
    /// Adds the terminology operations.
    public mutating func registerTerminology() {
        register(.lookup)
        register(.codeSystemValidateCode)
        register(.subsumes)
        register(.expand)
        register(.valueSetValidateCode)
        register(.translate)
        register(.unmappedCodes)
    }
}

extension RegisteredOperation {
    private typealias P = Parameter

    /// The code system an instance-level call is on (its `url`, and `version` if it has one).
    static func instanceSystem(_ service: FHIRService, _ request: OperationRequest) async throws -> (url: String, version: String?)? {
        guard let id = request.id else { return nil }
        let result = try await service.read("CodeSystem", id)
        guard let content = result.content, case .object(let o) = try service.pipeline.parse(Array(content.readableBytesView)),
              let url = o["url"]?.stringValue else {
            throw FHIRError(.invalid, code: "not-supported", "CodeSystem/\(id) has no url: its concepts are not looked up", at: "CodeSystem.url")
        }
        return (url, o["version"]?.stringValue)
    }

    static func codeInput(_ service: FHIRService, _ request: OperationRequest, code: String = "code", coding: String = "coding")
        async throws -> (CodeInputValue, TerminologyInputs) {
        let inputs = try TerminologyInputs(request)
        let instance = try await instanceSystem(service, request)
        var input = try inputs.code(code, coding: coding, defaultSystem: instance?.url, operation: request.name)
        if input.version == nil { input.version = instance?.version }
        return (input, inputs)
    }

    /// `CodeSystem/$lookup` (R4).
    static let lookup = RegisteredOperation(
        name: "lookup", resourceTypes: ["CodeSystem"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Look up a code",
        documentation: "A concept of a stored code system: the code system's name and version, the display (in displayLanguage when "
            + "a designation has it), designations, and properties with parent and child from the hierarchy.",
        parameters: [P("code", .in, type: "code", "The code (with system)"),
                     P("system", .in, type: "uri", "The code system's canonical URL"),
                     P("version", .in, type: "string", "The code system's version (default: the newest stored)"),
                     P("coding", .in, type: "Coding", "Instead of code, system and version"),
                     P("displayLanguage", .in, type: "code", "The language of the display (zh-CN, en)"),
                     P("property", .in, max: "*", type: "code", "Only these properties"),
                     P("name", .out, min: 1, type: "string", "The code system's name"),
                     P("version", .out, type: "string", "The code system's version"),
                     P("display", .out, min: 1, type: "string", "The concept's display"),
                     P("designation", .out, max: "*", type: nil, "language, use, value"),
                     P("property", .out, max: "*", type: nil, "code, value")],
        definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
        access: { _ in (.read, "CodeSystem") },
        handler: { service, request in
            let (input, inputs) = try await codeInput(service, request)
            return .resource(try await CodeSystemLookup(store: service.store).lookup(
                input, displayLanguage: inputs.string("displayLanguage"), properties: inputs.strings("property")))
        })

    /// `CodeSystem/$validate-code` (R4).
    static let codeSystemValidateCode = RegisteredOperation(
        name: "validate-code", resourceTypes: ["CodeSystem"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Check a code against a code system",
        documentation: "Whether the code is in the code system and, if a display is given, whether it is the concept's display or "
            + "one of its designations.",
        parameters: [P("url", .in, type: "uri", "The code system's canonical URL"),
                     P("code", .in, type: "code", "The code"),
                     P("version", .in, type: "string", "The code system's version"),
                     P("display", .in, type: "string", "The display to check"),
                     P("coding", .in, type: "Coding", "Instead of code, url, version and display"),
                     P("result", .out, min: 1, type: "boolean", "Whether the code (and display) is valid"),
                     P("message", .out, type: "string", "Why not, or a warning (an inactive code)"),
                     P("display", .out, type: "string", "The concept's display")],
        definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code",
        access: { _ in (.read, "CodeSystem") },
        handler: { service, request in
            let (input, _) = try await codeInput(service, request)
            let (result, message, display) = try await CodeSystemLookup(store: service.store).validate(input)
            var out = [JSONObject.parameter("result", "valueBoolean", .bool(result))]
            if let message { out.append(JSONObject.parameter("message", "valueString", .string(message))) }
            if let display { out.append(JSONObject.parameter("display", "valueString", .string(display))) }
            return .resource(JSONObject.parameters(out))
        })

    /// `CodeSystem/$subsumes` (R4).
    static let subsumes = RegisteredOperation(
        name: "subsumes", resourceTypes: ["CodeSystem"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Test subsumption",
        documentation: "Whether code A subsumes code B in the stored hierarchy of the code system: equivalent, subsumes, "
            + "subsumed-by or not-subsumed.",
        parameters: [P("codeA", .in, type: "code", "The first code"),
                     P("codeB", .in, type: "code", "The second code"),
                     P("system", .in, type: "uri", "The code system's canonical URL"),
                     P("version", .in, type: "string", "The code system's version"),
                     P("codingA", .in, type: "Coding", "Instead of codeA"),
                     P("codingB", .in, type: "Coding", "Instead of codeB"),
                     P("outcome", .out, min: 1, type: "code", "equivalent | subsumes | subsumed-by | not-subsumed")],
        definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
        access: { _ in (.read, "CodeSystem") },
        handler: { service, request in
            let (a, inputs) = try await codeInput(service, request, code: "codeA", coding: "codingA")
            let instance = try await instanceSystem(service, request)
            let b = try inputs.code("codeB", coding: "codingB", defaultSystem: instance?.url ?? a.system, operation: "subsumes")
            guard a.system == b.system else {
                throw FHIRError(.invalid, code: "invalid", "codeA and codeB are of different code systems", at: "codingB")
            }
            return .resource(try await CodeSystemLookup(store: service.store).subsumes(
                system: a.system, version: a.version, codeA: a.code, codeB: b.code))
        })

    /// The value set an operation is on: the instance, the `url` (+ `valueSetVersion`) input, or
    /// a `valueSet` resource in the body.
    static func valueSet(_ service: FHIRService, _ request: OperationRequest, _ inputs: TerminologyInputs) async throws -> JSONObject {
        if let id = request.id {
            let result = try await service.read("ValueSet", id)
            guard let content = result.content, case .object(let o) = try service.pipeline.parse(Array(content.readableBytesView)) else {
                throw FHIRError(.notFound, code: "not-found", "ValueSet/\(id) is not known")
            }
            return o
        }
        if case .object(let body)? = request.body {
            for p in body["parameter"]?.arrayValue ?? [] where p["name"]?.stringValue == "valueSet" {
                if case .object(let vs)? = p["resource"] { return vs }
            }
        }
        guard let url = inputs.string("url") else {
            throw FHIRError(.invalid, code: "required", "$\(request.name) needs url, a valueSet resource, or an instance", at: "url")
        }
        return try await ValueSetExpander(store: service.store).valueSet(url + (inputs.string("valueSetVersion").map { "|" + $0 } ?? ""))
    }

    /// `ValueSet/$expand` (R4).
    static let expand = RegisteredOperation(
        name: "expand", resourceTypes: ["ValueSet"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Expand a value set",
        documentation: "The codes of a value set (compose include/exclude, filters on the stored hierarchy and properties, nested value "
            + "sets), paged with offset and count; filter matches displays and designations, and Chinese displays by pinyin or its initials.",
        parameters: [P("url", .in, type: "uri", "The value set's canonical URL"),
                     P("valueSetVersion", .in, type: "string", "Its version"),
                     P("valueSet", .in, type: "ValueSet", "A value set given in the request"),
                     P("filter", .in, type: "string", "Text the displays contain (汉字, pinyin, or pinyin initials)"),
                     P("offset", .in, type: "integer", "Codes to skip"),
                     P("count", .in, type: "integer", "Codes to return"),
                     P("activeOnly", .in, type: "boolean", "Leave inactive codes out"),
                     P("displayLanguage", .in, type: "code", "The language of the displays (zh-CN, en)"),
                     P("includeDesignations", .in, type: "boolean", "Include the designations"),
                     P("return", .out, min: 1, type: "ValueSet", "The value set with its expansion")],
        definition: "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
        access: { _ in (.read, "ValueSet") },
        handler: { service, request in
            let inputs = try TerminologyInputs(request)
            let valueSet = try await valueSet(service, request, inputs)
            var options = ValueSetOperations.Options()
            options.filter = inputs.string("filter")
            options.offset = try OperationRequest.nonNegative("offset", inputs.string("offset")) ?? 0
            options.count = try OperationRequest.nonNegative("count", inputs.string("count"))
            options.activeOnly = try inputs.bool("activeOnly") ?? false
            options.displayLanguage = inputs.string("displayLanguage")
            options.includeDesignations = try inputs.bool("includeDesignations") ?? false
            return .resource(try await ValueSetOperations(store: service.store).expand(valueSet, options))
        })

    /// `ValueSet/$validate-code` (R4).
    static let valueSetValidateCode = RegisteredOperation(
        name: "validate-code", resourceTypes: ["ValueSet"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Check a code against a value set",
        documentation: "Whether the code (with its system) is in the value set and, if a display is given, whether it is the "
            + "concept's display or one of its designations.",
        parameters: [P("url", .in, type: "uri", "The value set's canonical URL"),
                     P("valueSetVersion", .in, type: "string", "Its version"),
                     P("valueSet", .in, type: "ValueSet", "A value set given in the request"),
                     P("code", .in, type: "code", "The code"),
                     P("system", .in, type: "uri", "The code's system"),
                     P("display", .in, type: "string", "The display to check"),
                     P("coding", .in, type: "Coding", "Instead of code, system and display"),
                     P("codeableConcept", .in, type: "CodeableConcept", "Valid if any of its codings is"),
                     P("result", .out, min: 1, type: "boolean", "Whether the code (and display) is valid"),
                     P("message", .out, type: "string", "Why not, or a warning"),
                     P("display", .out, type: "string", "The concept's display")],
        definition: "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
        access: { _ in (.read, "ValueSet") },
        handler: { service, request in
            let inputs = try TerminologyInputs(request)
            let valueSet = try await valueSet(service, request, inputs)
            var candidates: [(String?, String, String?)] = []
            if let concept = inputs.codeableConcept("codeableConcept") {
                for c in concept["coding"]?.arrayValue ?? [] {
                    if let code = c["code"]?.stringValue { candidates.append((c["system"]?.stringValue, code, c["display"]?.stringValue)) }
                }
            } else if let coding = inputs.coding("coding"), let code = coding["code"]?.stringValue {
                candidates.append((coding["system"]?.stringValue, code, coding["display"]?.stringValue))
            } else if let code = inputs.string("code") {
                candidates.append((inputs.string("system"), code, inputs.string("display")))
            }
            guard !candidates.isEmpty else {
                throw FHIRError(.invalid, code: "required", "$validate-code needs code (with system), coding or codeableConcept", at: "code")
            }
            let operations = ValueSetOperations(store: service.store)
            var answer: (Bool, String?, String?) = (false, nil, nil)
            for (system, code, display) in candidates {
                answer = try await operations.validate(valueSet, system: system, code: code, display: display)
                if answer.0 { break }
            }
            var out = [JSONObject.parameter("result", "valueBoolean", .bool(answer.0))]
            if let message = answer.1 { out.append(JSONObject.parameter("message", "valueString", .string(message))) }
            if let display = answer.2 { out.append(JSONObject.parameter("display", "valueString", .string(display))) }
            return .resource(JSONObject.parameters(out))
        })

    /// `ConceptMap/$translate` (R4).
    static let translate = RegisteredOperation(
        name: "translate", resourceTypes: ["ConceptMap"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Translate a code",
        documentation: "The codes a concept map gives for a code (forward, or with reverse=true from target to source): the map named "
            + "by url or instance, one in the request, or every stored map from the code's system (to targetsystem).",
        parameters: [P("url", .in, type: "uri", "The concept map's canonical URL"),
                     P("conceptMap", .in, type: "ConceptMap", "A concept map given in the request"),
                     P("code", .in, type: "code", "The code"),
                     P("system", .in, type: "uri", "Its system"),
                     P("coding", .in, type: "Coding", "Instead of code and system"),
                     P("codeableConcept", .in, type: "CodeableConcept", "Each of its codings"),
                     P("targetsystem", .in, type: "uri", "Only targets in this system"),
                     P("reverse", .in, type: "boolean", "From target to source"),
                     P("result", .out, min: 1, type: "boolean", "Whether a mapping was found"),
                     P("message", .out, type: "string", "Why not"),
                     P("match", .out, max: "*", type: nil, "equivalence, concept, source")],
        definition: "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
        access: { _ in (.read, "ConceptMap") },
        handler: { service, request in
            let inputs = try TerminologyInputs(request)
            var codings: [(String, String)] = []
            if let concept = inputs.codeableConcept("codeableConcept") {
                for c in concept["coding"]?.arrayValue ?? [] {
                    if let system = c["system"]?.stringValue, let code = c["code"]?.stringValue { codings.append((system, code)) }
                }
            } else {
                let input = try inputs.code("code", coding: "coding", defaultSystem: nil, operation: "translate")
                codings.append((input.system, input.code))
            }
            let reverse = try inputs.bool("reverse") ?? false
            let maps = try await conceptMaps(service, request, inputs, systems: Set(codings.map(\.0)), reverse: reverse)
            let targetSystem = inputs.string("targetsystem")
            var matches: [JSON] = []
            var seen: Set<[String]> = []  // a map reached both directly and through another's other-map answers once
            var found = false
            for map in maps {
                for (system, code) in codings {
                    for target in try await translated(service, map, system, code, reverse: reverse)
                    where (targetSystem == nil || target.system == targetSystem)
                        && seen.insert([target.equivalence, target.system, target.code, target.map]).inserted {
                        var concept = JSONObject([("system", .string(target.system))])
                        if !target.code.isEmpty { concept["code"] = .string(target.code) }
                        if let display = target.display { concept["display"] = .string(display) }
                        if !target.code.isEmpty && !["unmatched", "disjoint"].contains(target.equivalence) { found = true }
                        matches.append(JSONObject.parameter("match", parts: [
                            JSONObject.parameter("equivalence", "valueCode", .string(target.equivalence)),
                            JSONObject.parameter("concept", "valueCoding", .object(concept)),
                            JSONObject.parameter("source", "valueUri", .string(target.map)),
                        ]))
                    }
                }
            }
            var out = [JSONObject.parameter("result", "valueBoolean", .bool(found))]
            if !found {
                out.append(JSONObject.parameter("message", "valueString", .string(
                    "No mapping for " + codings.map { "\($0.0)#\($0.1)" }.joined(separator: ", ") + (maps.isEmpty ? " (no concept map applies)" : ""))))
            }
            return .resource(JSONObject.parameters(out + matches))
        })

    /// `map`'s targets of `system#code`, following `group.unmapped` mode other-map to the map its
    /// canonical names (`url` or `url|version`; of several versions, the newest), never to a map
    /// already on the way, and at most four hops.
    static func translated(_ service: FHIRService, _ map: ParsedConceptMap, _ system: String, _ code: String, reverse: Bool,
                           visited: Set<String> = []) async throws -> [ParsedConceptMap.Target] {
        let targets = map.translate(system: system, code: code, reverse: reverse)
        let visited = visited.union([map.url])
        guard targets.isEmpty, !reverse, visited.count <= 4, let canonical = map.otherMap[system] else { return targets }
        let parts = canonical.split(separator: "|", maxSplits: 1).map(String.init)
        guard !visited.contains(parts[0]) else { return [] }
        let keys = try await service.store.search(SearchQuery(type: "ConceptMap", clauses: [.init(parameter: "url", parameterType: "uri",
                                                                                                   values: [.uri(parts[0])])]), limit: 50)
        let candidates = try await service.store.read(keys: keys).values.compactMap { record -> JSONObject? in
            guard let content = record.content, let o = (try? JSONParser.parse(Array(content.readableBytesView)))?.objectValue,
                  parts.count == 1 || o["version"]?.stringValue == parts[1] else { return nil }
            return o
        }
        // The newest version: by `version` as FHIR orders canonical versions, then the latest write.
        guard let other = candidates.max(by: { a, b in
            CanonicalVersion.precedes(a["version"]?.stringValue ?? "", b["version"]?.stringValue ?? "")
        }) else { return [] }
        return try await translated(service, ParsedConceptMap(other), system, code, reverse: false, visited: visited)
    }

    /// The concept maps a `$translate` uses.
    static func conceptMaps(_ service: FHIRService, _ request: OperationRequest, _ inputs: TerminologyInputs, systems: Set<String>,
                            reverse: Bool) async throws -> [ParsedConceptMap] {
        if let id = request.id {
            let result = try await service.read("ConceptMap", id)
            guard let content = result.content, case .object(let o) = try service.pipeline.parse(Array(content.readableBytesView)) else { return [] }
            return [ParsedConceptMap(o)]
        }
        if case .object(let body)? = request.body {
            for p in body["parameter"]?.arrayValue ?? [] where p["name"]?.stringValue == "conceptMap" {
                if case .object(let map)? = p["resource"] { return [ParsedConceptMap(map)] }
            }
        }
        var clauses: [SearchQuery.Clause]
        if let url = inputs.string("url") {
            clauses = [.init(parameter: "url", parameterType: "uri", values: [.uri(url)])]
        } else {
            clauses = [.init(parameter: reverse ? "target-system" : "source-system", parameterType: "uri", values: systems.sorted().map { .uri($0) })]
        }
        let keys = try await service.store.search(SearchQuery(type: "ConceptMap", clauses: clauses), limit: 200)
        let maps = try await service.store.read(keys: keys).values.sorted { $0.key.id < $1.key.id }.compactMap { record -> ParsedConceptMap? in
            guard let content = record.content, let o = (try? JSONParser.parse(Array(content.readableBytesView)))?.objectValue else { return nil }
            return ParsedConceptMap(o)
        }
        if inputs.string("url") != nil && maps.isEmpty {
            throw FHIRError(.notFound, code: "not-found", "Unknown concept map '\(inputs.string("url")!)'", at: "url")
        }
        return maps
    }

    /// `ConceptMap/$unmapped-codes`: a facility's local codes its maps do not map (data quality).
    static let unmappedCodes = RegisteredOperation(
        name: "unmapped-codes", resourceTypes: ["ConceptMap"], levels: [.type], allowsGet: true, affectsState: false,
        title: "A facility's unmapped local codes",
        documentation: "The codes of the local systems a facility maps from (its ConceptMaps' group.source) that its maps do not map, "
            + "with how many of its current records carry each, the most used first: what to add to its maps (四统一). A facility "
            + "sees its own; administrators and operators name the facility. Counts only, no records.",
        parameters: [P("facility", .in, type: "string", "The facility (default: the caller's)"),
                     P("count", .in, type: "integer", "At most this many codes (default 100, at most 1000)"),
                     P("code", .out, max: "*", type: nil, "system, code, records")],
        access: { _ in (.read, "ConceptMap") },
        handler: { service, request in
            let inputs = try TerminologyInputs(request)
            let own = service.principal.facility
            guard let facility = inputs.string("facility") ?? own else {
                throw FHIRError(.invalid, code: "required", "$unmapped-codes needs facility", at: "facility")
            }
            if let own, own != facility {
                throw FHIRError(.forbidden, code: "forbidden", "A facility sees its own unmapped codes, not those of '\(facility)'")
            }
            let role = service.principal.role
            let facilityRoles: Set<Role> = [.facilitySystem, .clinician, .emergencyClinician]
            guard [.administrator, .platformOperator].contains(role) || (facilityRoles.contains(role) && own == facility) else {
                throw FHIRError(.forbidden, code: "forbidden", "A facility's unmapped codes are for the facility, administrators and operators")
            }
            let count = min(max(try OperationRequest.nonNegative("count", inputs.string("count")) ?? 100, 1), 1000)
            let maps = try await FacilityCodeMaps(store: service.store, ttl: .zero).maps(for: facility)
            let systems = maps.reduce(into: Set<String>()) { $0.formUnion($1.sourceSystems) }.sorted()
            var out: [JSON] = []
            // Mapped codes are skipped: ask for more rows until enough unmapped ones are found.
            var limit = 20 * count
            while true {
                let counts = try await service.store.codeCounts(facility: facility, systems: systems, limit: limit)
                out = []
                for c in counts where !maps.contains(where: { $0.maps(system: c.system, code: c.code) }) {
                    out.append(JSONObject.parameter("code", parts: [JSONObject.parameter("system", "valueUri", .string(c.system)),
                                                                   JSONObject.parameter("code", "valueCode", .string(c.code)),
                                                                   JSONObject.parameter("records", "valueInteger", .number(String(c.resources)))]))
                    if out.count == count { break }
                }
                if out.count == count || counts.count < limit || limit >= 1_000_000 { break }
                limit *= 10
            }
            return .resource(JSONObject.parameters(out))
        })
}
