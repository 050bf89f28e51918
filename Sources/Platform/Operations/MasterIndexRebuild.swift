import Access
import FHIRModel
import Identity
import NIOCore
import Store

/// `huitong empi rebuild`: matches every Patient again (after the rules changed), as if they
/// arrived anew in storage order. AUTO links are cleared first; MANUAL links (level4) and the
/// reviewers' not-a-match decisions stay, so no reviewer's work is lost.
public struct MasterIndexRebuild: Sendable {
    public let service: FHIRService
    public static let batch = 500

    public init(service: FHIRService) {
        self.service = service
    }

    public struct Report: Sendable {
        public var personsCleared = 0
        public var patients = 0
        public var outcomes: [String: Int] = [:]
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Report {
        guard let index = service.masterIndex else { throw FHIRError(.unsupported, code: "not-supported", "Matching is turned off") }
        var report = Report()
        let previous: [ResourceKey: ResourceKey]
        (report.personsCleared, previous) = try await clearAutomaticLinks(progress)
        var page = PageRequest(count: Self.batch)
        let total = try await service.store.resourceCounts()["Patient"] ?? 0
        while true {
            let result = try await service.store.search(SearchQuery(type: "Patient", clauses: []), page: page)
            // Patients as if written again: the plan only needs their content and blocking keys;
            // the Patients themselves are not rewritten.
            let writes: [PreparedWrite] = result.records.compactMap { record in
                guard let o = IdentifierProtection.parse(record.content, revealing: service.pipeline.protection) else { return nil }
                return service.pipeline.prepareGenerated(o, type: "Patient", id: record.key.id, method: "PUT", ifMatch: nil)
            }
            let plan = try await index.plan(for: writes, previous: previous)
            let generated = plan.writes.map {
                WriteRequest.generated($0.resource, key: ResourceKey($0.type, $0.id), method: $0.method, ifMatch: $0.ifMatch, validate: false)
            }
            if !generated.isEmpty { _ = try await service.writePipeline.write(generated, assumptions: plan.assumptions, as: .operation("empi-rebuild")) }
            report.patients += writes.count
            for outcome in plan.outcomes.values { report.outcomes[outcome.rawValue, default: 0] += 1 }
            progress("matched \(report.patients)/\(total) Patients")
            guard let next = result.next else { break }
            page = next
        }
        return report
    }

    /// Removes every AUTO (level3) Patient link; a Person left with none is deleted, and open
    /// review items are withdrawn (matching raises them again where they still apply). Returns how
    /// many Persons changed and where each unlinked Patient was.
    func clearAutomaticLinks(_ progress: @Sendable (String) -> Void) async throws -> (Int, [ResourceKey: ResourceKey]) {
        var cleared = 0
        var previous: [ResourceKey: ResourceKey] = [:]
        var page = PageRequest(count: Self.batch)
        while true {
            let result = try await service.store.search(SearchQuery(type: "Person", clauses: []), page: page)
            var writes: [WriteRequest] = []
            for record in result.records {
                guard var o = IdentifierProtection.parse(record.content, revealing: service.pipeline.protection) else { continue }
                let links = o["link"]?.arrayValue ?? []
                let kept = links.filter { link in
                    !(link["target"]?["reference"]?.stringValue?.hasPrefix("Patient/") == true && link["assurance"]?.stringValue == "level3")
                }
                guard kept.count != links.count else { continue }
                cleared += 1
                for link in links where !kept.contains(link) {
                    if let ref = link["target"]?["reference"]?.stringValue {
                        let parts = ref.split(separator: "/")
                        if parts.count == 2 { previous[ResourceKey(String(parts[0]), String(parts[1]))] = record.key }
                    }
                }
                if kept.isEmpty && o["extension"] == nil {
                    writes.append(.delete(record.key, ifMatch: record.version, author: .platform(validate: false)))
                } else {
                    o["link"] = kept.isEmpty ? nil : .array(kept)
                    writes.append(.generated(o, key: record.key, method: "PUT", ifMatch: record.version, validate: false))
                }
            }
            let open = try await service.store.search(SearchQuery(type: "Task", clauses: [
                .init(parameter: "code", values: [.token(system: ReviewItems.codeSystem, code: "possible-match"),
                                                  .token(system: ReviewItems.codeSystem, code: "possible-duplicate")]),
                .init(parameter: "status", values: [.token(system: nil, code: "requested")]),
            ]), limit: 10_000)
            writes += open.map { .delete($0, author: .platform(validate: false)) }
            if !writes.isEmpty { _ = try await service.writePipeline.write(writes, as: .operation("empi-rebuild")) }
            progress("cleared automatic links of \(cleared) Persons")
            guard let next = result.next else { break }
            page = next
        }
        return (cleared, previous)
    }
}
