import FHIRModel
import Foundation
import Hummingbird
import Platform
import Store

/// HTTP for the master patient index's operations (`MasterIndexOperations`).
extension FHIRRoutes {
    var masterIndex: MasterIndexOperations { MasterIndexOperations(service: service) }

    /// `POST /fhir/$name`: the reviewers' decisions.
    func systemOperation(_ name: String, _ request: Request) async throws -> Response {
        guard MasterIndexOperations.decisions.contains(where: { $0.name == name }) else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown operation $\(name)")
        }
        return FHIRResponse.json(try await masterIndex.decide(name, try await readResource(request)))
    }

    /// `POST /fhir/{type}/$name`: `Patient/$match`.
    func typeOperation(_ type: String, _ operation: String, _ request: Request, base: String) async throws -> Response {
        guard type == "Patient", operation == "$match" else {
            throw FHIRError(.notFound, code: "not-supported", "Unknown operation \(type)/\(operation)")
        }
        let results = try await masterIndex.match(try await readResource(request))
        var writer = BundleWriter(type: "searchset", total: results.count, links: [("self", "\(base)/Patient/$match")])
        for r in results {
            let search = JSONObject([
                ("extension", .array([.object(JSONObject([("url", .string("http://hl7.org/fhir/StructureDefinition/match-grade")),
                                                          ("valueCode", .string(r.grade))]))])),
                ("mode", .string("match")),
                ("score", .number(String(format: "%.4f", r.probability))),
            ])
            writer.add(fullUrl: "\(base)/\(r.record.key)", resource: r.record.content, extra: [("search", .object(search))])
        }
        return writer.response()
    }

    /// `GET /fhir/Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=...]` (IHE PIXm).
    func pix(_ request: Request) async throws -> Response {
        let params = request.uri.queryParameters
        guard let source = params["sourceIdentifier"].map(String.init) else {
            throw FHIRError(.invalid, code: "required", "$ihe-pix needs sourceIdentifier=system|value", at: "sourceIdentifier")
        }
        let targets = params.getAll("targetSystem").flatMap { $0.split(separator: ",").map(String.init) }
        return FHIRResponse.json(try await masterIndex.pix(sourceIdentifier: source, targetSystems: targets))
    }
}
