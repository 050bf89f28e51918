import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// Recognition statistics (互认统计, ADR 024) per ordering facility, item, department and month:
/// orders that had a recognisable prior result (their DetectedIssue), decisions recorded —
/// recognised, re-tested by reason — refusals (the six national situations only), tests avoided
/// and their cost (the catalogue's price). A `MeasureReport`, or CSV.
public struct RecognitionStatistics: Sendable {
    public static let measure = "https://huitong.health/fhir/Measure/recognition"

    public struct Row: Sendable, Equatable {
        public var facility: String
        public var system: String
        public var code: String
        public var display: String
        public var department: String
        public var recognisableOrders = 0
        public var decisions: [RecognitionDecision: Int] = [:]
        public var price: Double?

        public var recognised: Int { decisions[.recognised] ?? 0 }
        public var retested: Int { decisions.filter { $0.key != .recognised }.values.reduce(0, +) }
        public var refusals: Int { decisions.filter { $0.key.isRefusal }.values.reduce(0, +) }
        public var avoidedCost: Double { Double(recognised) * (price ?? 0) }
    }

    let searches: SearchService
    let store: any ResourceStore

    /// Counted as the platform (aggregates only leave).
    public init(store: any ResourceStore, searches: SearchService) {
        self.store = store
        self.searches = searches.acting(as: .platform)
    }

    /// `month` is `yyyy-MM`; `facility` narrows to one ordering facility.
    public func rows(month: String, facility: String?) async throws -> [Row] {
        let catalogue = try await RecognitionCatalogue.stored(in: store)
        var rows: [String: Row] = [:]
        var orders: [String: (facility: String, item: RecognitionItem, department: String)?] = [:]
        func order(_ reference: String) async throws -> (facility: String, item: RecognitionItem, department: String)? {
            if let known = orders[reference] { return known }
            var found: (String, RecognitionItem, String)?
            let parts = reference.split(separator: "/").map(String.init)
            if parts.count == 2, parts[0] == "ServiceRequest", let record = try await store.read(ResourceKey("ServiceRequest", parts[1])),
               !record.deleted, let content = record.content, case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)),
               let from = FHIRService.sourceFacility(of: o), facility == nil || facility == from, let item = catalogue.item(in: o["code"]) {
                found = (from, item, try await department(o))
            }
            orders[reference] = found
            return found
        }
        func row(_ o: (facility: String, item: RecognitionItem, department: String)) -> String {
            let key = [o.facility, o.item.system, o.item.code, o.department].joined(separator: "\u{1}")
            if rows[key] == nil {
                rows[key] = Row(facility: o.facility, system: o.item.system, code: o.item.code, display: o.item.display,
                                department: o.department, price: o.item.price)
            }
            return key
        }
        // Only what the ordering facility itself recorded counts (another facility cannot add to
        // its numbers): the DetectedIssues raised on its orders, the decisions it wrote.
        // A month in Beijing time (a search for `2026-12` alone would take UTC's month).
        let (from, to) = Self.bounds(month)
        for issue in try await all("DetectedIssue", "code=\(RecognizableResults.outcomeSystem)|\(DuplicateTestCheck.issueCode)"
                                   + "&identified=ge\(from)&identified=lt\(to)") {
            guard let first = issue["implicated"]?.arrayValue?.first?["reference"]?.stringValue, let o = try await order(first),
                  FHIRService.sourceFacility(of: issue) == o.facility else { continue }
            rows[row(o)]!.recognisableOrders += 1
        }
        for task in try await all("Task", "code=\(RecognizableResults.outcomeSystem)|\(RecognitionDecision.taskCode)"
                                  + "&authored-on=ge\(from)&authored-on=lt\(to)") {
            guard let decision = RecognitionDecision.of(task), let focus = task["focus"]?["reference"]?.stringValue,
                  let o = try await order(focus), FHIRService.sourceFacility(of: task) == o.facility else { continue }
            rows[row(o)]!.decisions[decision, default: 0] += 1
        }
        return rows.values.sorted { ($0.facility, $0.code, $0.department) < ($1.facility, $1.code, $1.department) }
    }

    /// The ordering department: the Organization of the requester's PractitionerRole, or the
    /// requesting Organization itself; "-" when the order does not say.
    func department(_ o: JSONObject) async throws -> String {
        guard let requester = o["requester"]?["reference"]?.stringValue else { return "-" }
        if requester.hasPrefix("Organization/") { return String(requester.dropFirst("Organization/".count)) }
        if requester.hasPrefix("PractitionerRole/"),
           let record = try await store.read(ResourceKey("PractitionerRole", String(requester.dropFirst("PractitionerRole/".count)))),
           let content = record.content, case .object(let role) = try JSONParser.parse(Array(content.readableBytesView)),
           let organization = role["organization"]?["reference"]?.stringValue, organization.hasPrefix("Organization/") {
            return String(organization.dropFirst("Organization/".count))
        }
        return "-"
    }

    func all(_ type: String, _ query: String) async throws -> [JSONObject] {
        var parsed = try searches.parse(type: type, query: query + "&_count=500", strict: true)
        var out: [JSONObject] = []
        while true {
            let result = try await searches.run(parsed)
            for record in result.matches {
                if let content = record.content, case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)) { out.append(o) }
            }
            guard let next = result.next else { return out }
            parsed.page = next
        }
    }

    // MARK: Output

    public static func measureReport(_ rows: [Row], month: String) -> JSON {
        func population(_ code: String, _ count: Int) -> JSON {
            .object(JSONObject([("code", .object(JSONObject([("coding", .array([.object(JSONObject([
                ("system", .string(RecognizableResults.outcomeSystem)), ("code", .string(code))]))]))]))), ("count", .number(String(count)))]))
        }
        let groups: [JSON] = rows.map { r in
            var populations = [population("recognisable-orders", r.recognisableOrders), population("recognised", r.recognised),
                               population("retested", r.retested), population("refusals", r.refusals)]
            for d in RecognitionDecision.allCases where d != .recognised {
                populations.append(population("retested:" + d.rawValue, r.decisions[d] ?? 0))
            }
            return .object(JSONObject([
                ("code", .object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(r.system)), ("code", .string(r.code)),
                                                                                   ("display", .string(r.display))]))])),
                                             ("text", .string("\(r.facility) / \(r.department) / \(r.display)"))]))),
                ("population", .array(populations)),
                ("measureScore", .object(JSONObject([("value", .number(RecognitionCatalogue.decimal(r.avoidedCost))), ("unit", .string("CNY")),
                                                     ("system", .string("urn:iso:std:iso:4217")), ("code", .string("CNY"))]))),
            ]))
        }
        let start = month + "-01"
        return .object(JSONObject([
            ("resourceType", .string("MeasureReport")), ("status", .string("complete")), ("type", .string("summary")),
            ("measure", .string(measure)),
            ("date", .string(FHIRDateTime.formatInstant(micros: Int64(Date().timeIntervalSince1970 * 1_000_000)))),
            ("period", .object(JSONObject([("start", .string(start)), ("end", .string(Self.monthEnd(month)))]))),
            ("group", .array(groups)),
        ]))
    }

    /// The first instants of a month (yyyy-MM) and of the next, Beijing time, as search values
    /// (the zone's `+` percent-encoded).
    static func bounds(_ month: String) -> (String, String) {
        let parts = month.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 2 else { return (month, month) }
        let (y, m) = parts[1] == 12 ? (parts[0] + 1, 1) : (parts[0], parts[1] + 1)
        return (month + "-01T00:00:00%2B08:00", String(format: "%04d-%02d-01T00:00:00%%2B08:00", y, m))
    }

    static func monthEnd(_ month: String) -> String {
        let parts = month.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 2 else { return month }
        let days = [31, (parts[0] % 4 == 0 && (parts[0] % 100 != 0 || parts[0] % 400 == 0)) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][max(0, min(11, parts[1] - 1))]
        return String(format: "%@-%02d", month, days)
    }

    public static func csv(_ rows: [Row], month: String) -> String {
        let reasons = RecognitionDecision.allCases.filter { $0 != .recognised }
        var lines = [(["month", "facility", "system", "code", "display", "department", "recognisable_orders", "recognised", "retested", "refusals"]
                      + reasons.map { "retested_" + $0.rawValue } + ["avoided_tests", "avoided_cost"]).joined(separator: ",")]
        func field(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        for r in rows {
            let cells = [month, r.facility, r.system, r.code, r.display, r.department, String(r.recognisableOrders), String(r.recognised),
                         String(r.retested), String(r.refusals)] + reasons.map { String(r.decisions[$0] ?? 0) }
                + [String(r.recognised), RecognitionCatalogue.decimal(r.avoidedCost)]
            lines.append(cells.map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension RegisteredOperation {
    static let recognitionStatistics = RegisteredOperation(
        name: "recognition-statistics", resourceTypes: [], levels: [.system], allowsGet: true, affectsState: false,
        title: "Recognition statistics (互认统计)",
        documentation: "Per ordering facility, item, department and month: orders with a recognisable prior result, recognised, "
            + "re-tested by reason, refusals (the six national situations), tests avoided and their cost. A MeasureReport; "
            + "_format=csv for CSV. A facility sees its own; administrators and operators any.",
        parameters: [Parameter("month", .in, type: "string", "yyyy-MM (default: this month)"),
                     Parameter("facility", .in, type: "string", "One ordering facility (a facility's caller: its own)"),
                     Parameter("return", .out, min: 1, type: "MeasureReport", "The statistics")],
        definition: nil,
        access: { _ in (.read, "MeasureReport") },
        handler: { service, request in
            let month = request.parameter("month") ?? String(QualityPass.day(Int64(Date().timeIntervalSince1970 * 1_000_000)).prefix(7))
            guard month.count == 7, FHIRDateTime.parse(month, kind: .date) != nil else {
                throw FHIRError(.invalid, code: "value", "month is yyyy-MM, not '\(month)'", at: "month")
            }
            let principal = service.principal
            let everyFacility = [Role.administrator, .platformOperator].contains(principal.role) || [.development, .platform].contains(principal.kind)
            var facility = request.parameter("facility")
            if !everyFacility {
                guard let own = principal.facility, facility == nil || facility == own else {
                    throw FHIRError(.forbidden, code: "forbidden", "A facility sees its own recognition statistics")
                }
                facility = own
            }
            var searches = SearchService(store: service.store)
            searches.masterIndex = service.masterIndex
            let rows = try await RecognitionStatistics(store: service.store, searches: searches).rows(month: month, facility: facility)
            if request.parameter("_format").map({ $0.lowercased().contains("csv") }) == true {
                return .text(RecognitionStatistics.csv(rows, month: month), contentType: "text/csv; charset=utf-8")
            }
            return .resource(RecognitionStatistics.measureReport(rows, month: month))
        })
}
