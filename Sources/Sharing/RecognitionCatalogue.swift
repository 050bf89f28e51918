import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// The catalogue of mutually recognisable items (互认项目目录, 国卫医发〔2022〕6号; ADR 024): each
/// item's code (LOINC or local), category, validity window (互认有效期), recognition scope and
/// price. Kept as one `CodeSystem` whose concepts carry these as properties of the CSV's column
/// names, so a region loads it from its spreadsheet (`huitong sharing load-catalogue`) and an
/// administrator can edit it over FHIR.
public struct RecognitionItem: Sendable, Equatable {
    public enum Category: String, Sendable, CaseIterable { case lab, imaging, function }

    public var system: String
    public var code: String
    public var display: String
    public var category: Category
    public var validityDays: Int
    public var scope: RecognitionScope
    /// Yuan (元), for the avoided-cost statistics.
    public var price: Double?

    public init(system: String, code: String, display: String, category: Category, validityDays: Int, scope: RecognitionScope, price: Double?) {
        self.system = system
        self.code = code
        self.display = display
        self.category = category
        self.validityDays = validityDays
        self.scope = scope
        self.price = price
    }
}

/// How far a recognition reaches, narrowest first: the producing facility's city, its province,
/// the region this platform serves (e.g. 京津冀鲁), the whole country.
public enum RecognitionScope: String, Sendable, CaseIterable, Comparable {
    case city, province, region, national

    public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }

    public var chinese: String {
        switch self {
        case .city: "市级"
        case .province: "省级"
        case .region: "区域"
        case .national: "全国"
        }
    }
}

public struct RecognitionCatalogue: Sendable {
    public static let url = "https://huitong.health/fhir/CodeSystem/recognition-items"
    public static let id = "recognition-items"
    static let columns = ["system", "code", "display", "category", "validity_days", "scope", "price"]

    public var items: [String: RecognitionItem] = [:] {
        didSet { bySystem = Self.bySystem(items) }
    }
    /// The items by system, then code: looked up for every result ingested, without joining strings.
    private var bySystem: [String: [String: RecognitionItem]] = [:]

    public init(_ items: [RecognitionItem] = []) {
        var all: [String: RecognitionItem] = [:]
        for item in items { all[Self.key(item.system, item.code)] = item }
        self.items = all
        bySystem = Self.bySystem(all)
    }

    static func bySystem(_ items: [String: RecognitionItem]) -> [String: [String: RecognitionItem]] {
        var out: [String: [String: RecognitionItem]] = [:]
        for item in items.values { out[item.system, default: [:]][item.code] = item }
        return out
    }

    static func key(_ system: String, _ code: String) -> String { system + "|" + code }

    public func item(system: String, code: String) -> RecognitionItem? { bySystem[system]?[code] }

    /// The catalogue item among a CodeableConcept's codings (the first that is one).
    public func item(in concept: JSON?) -> RecognitionItem? {
        for coding in concept?["coding"]?.arrayValue ?? [] {
            if let system = coding["system"]?.stringValue, let code = coding["code"]?.stringValue, let item = item(system: system, code: code) {
                return item
            }
        }
        return nil
    }

    // MARK: CSV

    /// Reads `system,code,display,category,validity_days,scope,price` (header first); every bad
    /// row is reported, with its line, before anything is loaded.
    public static func parse(csv text: String) throws(FHIRError) -> [RecognitionItem] {
        var seen: [String: Int] = [:]
        return try CSVList(text, columns: columns, optional: ["price"], what: "catalogue").entries { row, bad in
            let system = row["system"], code = row["code"], display = row["display"]
            if system.isEmpty { bad.append("system is empty") }
            if code.isEmpty { bad.append("code is empty") }
            let category = RecognitionItem.Category(rawValue: row["category"])
            if category == nil { bad.append("category is lab, imaging or function, not '\(row["category"])'") }
            let days = Int(row["validity_days"])
            if days == nil || days! < 1 { bad.append("validity_days is a whole number of days ≥ 1, not '\(row["validity_days"])'") }
            let scope = RecognitionScope(rawValue: row["scope"])
            if scope == nil { bad.append("scope is city, province, region or national, not '\(row["scope"])'") }
            var price: Double?
            if !row["price"].isEmpty {
                price = Double(row["price"])
                if price == nil || price! < 0 { bad.append("price is an amount in yuan, not '\(row["price"])'") }
            }
            if let first = seen[key(system, code)] { bad.append("\(system)|\(code) is on line \(first) already") }
            seen[key(system, code)] = row.line
            guard let category, let days, let scope else { return nil }
            return RecognitionItem(system: system, code: code, display: display.isEmpty ? code : display, category: category,
                                   validityDays: days, scope: scope, price: price)
        }
    }

    // MARK: CodeSystem

    static let concept = "concept"

    /// The catalogue as its CodeSystem (concept code `system|code`, the columns as properties).
    public var codeSystem: JSONObject {
        func property(_ code: String, _ type: String, _ text: String) -> JSON {
            .object(JSONObject([("code", .string(code)), ("type", .string(type)), ("description", .string(text))]))
        }
        let concepts: [JSON] = items.values.sorted { ($0.system, $0.code) < ($1.system, $1.code) }.map { item in
            var properties: [JSON] = [
                .object(JSONObject([("code", .string("system")), ("valueString", .string(item.system))])),
                .object(JSONObject([("code", .string("code")), ("valueString", .string(item.code))])),
                .object(JSONObject([("code", .string("category")), ("valueCode", .string(item.category.rawValue))])),
                .object(JSONObject([("code", .string("validity_days")), ("valueInteger", .number(String(item.validityDays)))])),
                .object(JSONObject([("code", .string("scope")), ("valueCode", .string(item.scope.rawValue))])),
            ]
            if let price = item.price { properties.append(.object(JSONObject([("code", .string("price")), ("valueDecimal", .number(Self.decimal(price)))]))) }
            return .object(JSONObject([("code", .string(Self.key(item.system, item.code))), ("display", .string(item.display)),
                                       ("property", .array(properties))]))
        }
        return JSONObject([
            ("resourceType", .string("CodeSystem")), ("id", .string(Self.id)), ("url", .string(Self.url)),
            ("name", .string("RecognitionItems")), ("title", .string("检查检验结果互认项目目录 (mutually recognised items)")),
            ("status", .string("active")), ("content", .string("complete")), ("caseSensitive", .bool(true)),
            ("count", .number(String(concepts.count))),
            ("property", .array([
                property("system", "string", "The item's code system (LOINC, or a local system)"),
                property("code", "string", "The item's code in that system"),
                property("category", "code", "lab | imaging | function (检验 / 检查 / 功能)"),
                property("validity_days", "integer", "互认有效期: days from the result's effective time"),
                property("scope", "code", "city | province | region | national"),
                property("price", "decimal", "Price in yuan, for the avoided-cost statistics"),
            ])),
            ("concept", .array(concepts)),
        ])
    }

    static func decimal(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    /// The catalogue in a stored CodeSystem (concepts that are not items are skipped).
    public init(codeSystem o: JSONObject) {
        var items: [RecognitionItem] = []
        for concept in o["concept"]?.arrayValue ?? [] {
            var p: [String: JSON] = [:]
            for property in concept["property"]?.arrayValue ?? [] {
                guard let code = property["code"]?.stringValue else { continue }
                p[code] = property.objectValue?.first { $0.key.hasPrefix("value") }?.value
            }
            guard let system = p["system"]?.stringValue, let code = p["code"]?.stringValue,
                  let category = p["category"]?.stringValue.flatMap(RecognitionItem.Category.init),
                  let days = p["validity_days"]?.numberText.flatMap({ Int($0) }),
                  let scope = p["scope"]?.stringValue.flatMap(RecognitionScope.init) else { continue }
            let item = RecognitionItem(system: system, code: code, display: concept["display"]?.stringValue ?? code, category: category,
                                       validityDays: days, scope: scope, price: p["price"]?.numberText.flatMap { Double($0) })
            items.append(item)
        }
        self.init(items)
    }

    /// The stored catalogue (empty when none is loaded).
    public static func stored(in store: any ResourceStore) async throws -> RecognitionCatalogue {
        guard let record = try await store.read(ResourceKey("CodeSystem", id)), !record.deleted, let content = record.content,
              case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)) else { return RecognitionCatalogue() }
        return RecognitionCatalogue(codeSystem: o)
    }

    /// Adds or replaces `items` in the stored catalogue (others stay), as one write; unchanged
    /// content is left alone. Returns how many items the catalogue has.
    public static func load(_ items: [RecognitionItem], service: FHIRService) async throws -> (count: Int, changed: Bool) {
        var catalogue = try await stored(in: service.store)
        let before = catalogue
        for item in items { catalogue.items[key(item.system, item.code)] = item }
        guard catalogue.items != before.items || before.items.isEmpty else { return (catalogue.items.count, false) }
        _ = try await service.writePipeline.write([.generated(catalogue.codeSystem, key: ResourceKey("CodeSystem", id), method: "PUT", validate: true)],
                                                  as: .operation("load-catalogue"))
        return (catalogue.items.count, true)
    }
}
