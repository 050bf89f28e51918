import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store
import Synchronization

/// A facility's pass of an item's external quality assessment (室间质评) for a period, at a scope
/// (ADR 024). Loaded from the region's list (`huitong sharing load-qc`), kept as platform records.
public struct QualityPass: Sendable, Equatable {
    static let kind = "recognition-qc"

    public var facility: String
    public var system: String
    public var code: String
    public var scope: RecognitionScope
    /// Inclusive dates (`yyyy-MM-dd`, China time).
    public var from: String
    public var to: String

    var id: String { [facility, system, code, from].joined(separator: "|") }

    var content: String {
        JSONWriter.string(.object(JSONObject([("facility", .string(facility)), ("system", .string(system)), ("code", .string(code)),
                                               ("scope", .string(scope.rawValue)), ("from", .string(from)), ("to", .string(to))])))
    }

    init?(content: String) {
        guard let o = (try? JSONParser.parse(Array(content.utf8)))?.objectValue, let facility = o["facility"]?.stringValue,
              let system = o["system"]?.stringValue, let code = o["code"]?.stringValue,
              let scope = o["scope"]?.stringValue.flatMap(RecognitionScope.init), let from = o["from"]?.stringValue,
              let to = o["to"]?.stringValue else { return nil }
        self.init(facility: facility, system: system, code: code, scope: scope, from: from, to: to)
    }

    public init(facility: String, system: String, code: String, scope: RecognitionScope, from: String, to: String) {
        self.facility = facility
        self.system = system
        self.code = code
        self.scope = scope
        self.from = from
        self.to = to
    }

    static let columns = ["facility", "system", "code", "scope", "valid_from", "valid_to"]

    /// Reads `facility,system,code,scope,valid_from,valid_to` (header first): every bad row is
    /// reported with its line before anything is loaded; each item must be in the catalogue.
    public static func parse(csv text: String, catalogue: RecognitionCatalogue) throws(FHIRError) -> [QualityPass] {
        try CSVList(text, columns: columns, what: "QC list").entries { row, bad in
            let facility = row["facility"], system = row["system"], code = row["code"]
            if facility.isEmpty { bad.append("facility is empty (the Organization id the facility writes as)") }
            if catalogue.item(system: system, code: code) == nil { bad.append("\(system)|\(code) is not in the catalogue (load-catalogue first)") }
            let scope = RecognitionScope(rawValue: row["scope"])
            if scope == nil { bad.append("scope is city, province, region or national, not '\(row["scope"])'") }
            let from = row["valid_from"], to = row["valid_to"]
            if !isDate(from) { bad.append("valid_from is a date (yyyy-MM-dd), not '\(from)'") }
            if !isDate(to) { bad.append("valid_to is a date (yyyy-MM-dd), not '\(to)'") }
            if isDate(from), isDate(to), from > to { bad.append("valid_from \(from) is after valid_to \(to)") }
            return scope.map { QualityPass(facility: facility, system: system, code: code, scope: $0, from: from, to: to) }
        }
    }

    static func isDate(_ text: String) -> Bool {
        text.count == 10 && FHIRDateTime.parse(text, kind: .date) != nil
    }

    /// Stores the passes as one unit (a pass with the same facility, item and start is replaced).
    public static func load(_ passes: [QualityPass], store: any ResourceStore) async throws {
        try await store.commitRecords(passes.map { RecordWrite(PlatformRecord(kind: kind, id: $0.id, content: $0.content)) })
    }

    public static func all(in store: any ResourceStore) async throws -> [QualityPass] {
        try await store.records(kind: kind, now: 0).compactMap { QualityPass(content: $0.content) }
    }

    /// The day (China time) of a moment, as the passes' dates are written.
    static func day(_ micros: Int64) -> String {
        // Beijing time (UTC+8, no daylight saving), by arithmetic: a Foundation Calendar per
        // result cost a quarter of the ingest rate of results (bench/sharing.py).
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let local = seconds + 8 * 3600
        let days = Int(local >= 0 ? local / 86_400 : (local - 86_399) / 86_400)
        let (y, m, d) = civil(days)
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2)
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's days_from_civil, inverted).
    static func civil(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

/// The HR mark (互认标识) of a result: stamped when the result is first committed, from the
/// catalogue and the producing facility's QC passes at the result's effective time — never
/// recomputed later (an update keeps the mark the stored version has; a client cannot set one).
/// A `meta.tag` `HR-<scope>` in `RecognitionMarks.system`, the narrower of the item's scope and the
/// pass's.
public final class RecognitionMarks: WriteEnricher {
    public static let system = "https://huitong.health/fhir/CodeSystem/recognition-mark"
    /// The types that carry results the catalogue can name.
    public static let types: Set<String> = ["Observation", "DiagnosticReport", "ImagingStudy"]

    let store: any ResourceStore
    let ttl: Duration
    private let cache = Mutex<(at: ContinuousClock.Instant, catalogue: RecognitionCatalogue, passes: [String: [QualityPass]])?>(nil)

    public init(store: any ResourceStore, ttl: Duration = .seconds(2)) {
        self.store = store
        self.ttl = ttl
    }

    /// The catalogue and the passes by facility and item, read again at most every `ttl`.
    func current() async throws -> (RecognitionCatalogue, [String: [QualityPass]]) {
        let now = ContinuousClock.now
        if let c = cache.withLock({ $0 }), now - c.at < ttl { return (c.catalogue, c.passes) }
        let catalogue = try await RecognitionCatalogue.stored(in: store)
        var passes: [String: [QualityPass]] = [:]
        for p in try await QualityPass.all(in: store) { passes[Self.passKey(p.facility, p.system, p.code), default: []].append(p) }
        cache.withLock { $0 = (now, catalogue, passes) }
        return (catalogue, passes)
    }

    static func passKey(_ facility: String, _ system: String, _ code: String) -> String { facility + "|" + system + "|" + code }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        guard Self.types.contains(type) else { return resource }
        var o = resource
        let tags = (o["meta"]?["tag"]?.arrayValue ?? []).filter { $0["system"]?.stringValue != Self.system }
        var mark: JSON?
        var stamp = true
        if let id = o["id"]?.stringValue, let stored = try await store.read(ResourceKey(type, id)), !stored.deleted,
           let content = stored.content, case .object(let old) = try JSONParser.parse(Array(content.readableBytesView)),
           Self.sameResult(old, o, type: type) {
            // The same result (item and time unchanged) keeps the stored version's mark, or its
            // absence: never recomputed. A changed item or time is judged anew, as a new result.
            mark = old["meta"]?["tag"]?.arrayValue?.first { $0["system"]?.stringValue == Self.system }
            stamp = false
        }
        if stamp, let facility {
            let (catalogue, passes) = try await current()
            if !catalogue.items.isEmpty, let item = Self.item(of: o, type: type, catalogue), let scope = Self.scope(
                item, facility: facility, passes: passes, at: Self.effective(o, type: type) ?? Int64(Date().timeIntervalSince1970 * 1_000_000)) {
                mark = Self.tag(scope)
            }
        }
        guard mark != nil || tags.count != (o["meta"]?["tag"]?.arrayValue ?? []).count else { return resource }
        var meta = o["meta"]?.objectValue ?? JSONObject()
        let all = tags + (mark.map { [$0] } ?? [])
        meta["tag"] = all.isEmpty ? nil : .array(all)
        o["meta"] = meta.isEmpty ? nil : .object(meta)
        return o
    }

    /// Whether two versions are of the same result: the same codes and the same effective time.
    static func sameResult(_ a: JSONObject, _ b: JSONObject, type: String) -> Bool {
        let codes = type == "ImagingStudy" ? "procedureCode" : "code"
        return a[codes] == b[codes] && effective(a, type: type) == effective(b, type: type)
    }

    static func tag(_ scope: RecognitionScope) -> JSON {
        .object(JSONObject([("system", .string(system)), ("code", .string("HR-" + scope.rawValue)), ("display", .string("互认（\(scope.chinese)）"))]))
    }

    /// The scope of a stored result's mark (nil: not HR).
    public static func markedScope(_ o: JSONObject) -> RecognitionScope? {
        guard let code = o["meta"]?["tag"]?.arrayValue?.first(where: { $0["system"]?.stringValue == system })?["code"]?.stringValue,
              code.hasPrefix("HR-") else { return nil }
        return RecognitionScope(rawValue: String(code.dropFirst(3)))
    }

    /// The catalogue item a result is of.
    static func item(of o: JSONObject, type: String, _ catalogue: RecognitionCatalogue) -> RecognitionItem? {
        if type == "ImagingStudy" {
            return (o["procedureCode"]?.arrayValue ?? []).lazy.compactMap { catalogue.item(in: $0) }.first
        }
        return catalogue.item(in: o["code"])
    }

    /// When the result was obtained (microseconds): effective[x], else issued (ImagingStudy: started).
    public static func effective(_ o: JSONObject, type: String) -> Int64? {
        let candidates: [JSON?] = type == "ImagingStudy" ? [o["started"]]
            : [o["effectiveDateTime"], o["effectiveInstant"], o["effectivePeriod"]?["start"], o["issued"]]
        for c in candidates {
            if let text = c?.stringValue, let t = FHIRDateTime.parse(text, kind: .dateTime)?.low { return t }
        }
        return nil
    }

    /// The widest scope the facility's passes for the item give at a moment, narrowed to the item's.
    static func scope(_ item: RecognitionItem, facility: String, passes: [String: [QualityPass]], at micros: Int64) -> RecognitionScope? {
        let day = QualityPass.day(micros)
        let valid = (passes[passKey(facility, item.system, item.code)] ?? []).filter { $0.from <= day && day <= $0.to }
        guard let widest = valid.map(\.scope).max() else { return nil }
        return min(widest, item.scope)
    }
}
