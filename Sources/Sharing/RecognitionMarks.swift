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
    /// `replacing`: the list is the whole of each facility it names, whose other passes are removed
    /// in the same unit (results already marked keep their marks). Returns how many were removed.
    @discardableResult
    public static func load(_ passes: [QualityPass], replacing: Bool = false, store: any ResourceStore,
                            audit: [AuditRecord] = []) async throws -> Int {
        var writes = passes.map { RecordWrite(PlatformRecord(kind: kind, id: $0.id, content: $0.content)) }
        var removed = 0
        if replacing {
            let facilities = Set(passes.map(\.facility)), kept = Set(passes.map(\.id))
            for old in try await all(in: store) where facilities.contains(old.facility) && !kept.contains(old.id) {
                writes.append(.delete(kind: kind, id: old.id))
                removed += 1
            }
        }
        try await store.commitRecords(writes, audit: audit)
        return removed
    }

    public static func all(in store: any ResourceStore) async throws -> [QualityPass] {
        try await store.records(kind: kind, now: 0).compactMap { QualityPass(content: $0.content) }
    }

    /// The day (China time) of a moment, as the passes' dates are written.
    static func day(_ micros: Int64) -> String {
        let (y, m, d) = civil(dayNumber(micros))
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2)
    }

    /// The day (China time) of a moment, counted from 1970-01-01. Beijing time (UTC+8, no daylight
    /// saving), by arithmetic: a Foundation Calendar per result cost a quarter of the ingest rate
    /// of results (bench/sharing.py).
    static func dayNumber(_ micros: Int64) -> Int {
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let local = seconds + 8 * 3600
        return Int(local >= 0 ? local / 86_400 : (local - 86_399) / 86_400)
    }

    /// The day count of a date as the passes write it (`yyyy-MM-dd`); nil if it is not one.
    static func dayNumber(_ date: String) -> Int? {
        let b = Array(date.utf8)
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b.indices.allSatisfy({ $0 == 4 || $0 == 7 || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[$0]) }) else { return nil }
        func number(_ r: Range<Int>) -> Int { b[r].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) } }
        let (y, m, d) = (number(0..<4), number(5..<7), number(8..<10))
        guard (1...12).contains(m), (1...31).contains(d) else { return nil }
        return days(y, m, d)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    static func days(_ y: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y - 1 : y
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
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
    private let cache = Mutex<(at: ContinuousClock.Instant, catalogue: RecognitionCatalogue, passes: Passes)?>(nil)

    /// The passes by facility, system and code (looked up for every result ingested, without joining strings).
    typealias Passes = [String: [String: [String: [Window]]]]

    /// A pass as the stamping looks it up: its inclusive days (since 1970-01-01, China time) and scope.
    struct Window: Sendable {
        let from: Int
        let to: Int
        let scope: RecognitionScope
    }

    public init(store: any ResourceStore, ttl: Duration = .seconds(2)) {
        self.store = store
        self.ttl = ttl
    }

    /// The catalogue and the passes by facility and item, read again at most every `ttl`.
    func current() async throws -> (RecognitionCatalogue, Passes) {
        let now = ContinuousClock.now
        if let c = cache.withLock({ $0 }), now - c.at < ttl { return (c.catalogue, c.passes) }
        let catalogue = try await RecognitionCatalogue.stored(in: store)
        var passes: Passes = [:]
        for p in try await QualityPass.all(in: store) {
            guard let from = QualityPass.dayNumber(p.from), let to = QualityPass.dayNumber(p.to) else { continue }
            passes[p.facility, default: [:]][p.system, default: [:]][p.code, default: []].append(Window(from: from, to: to, scope: p.scope))
        }
        cache.withLock { $0 = (now, catalogue, passes) }
        return (catalogue, passes)
    }

    /// A result's catalogue (a CodeSystem) and its facility's QC passes (platform records, not
    /// resources), and its own stored version.
    public func reads(preparing type: String) -> Set<String>? {
        Self.types.contains(type) ? ["CodeSystem"] : []
    }

    /// A mark the client sent is dropped: only the platform marks (a client cannot set one).
    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        guard Self.types.contains(type), let tags = resource["meta"]?["tag"]?.arrayValue,
              tags.contains(where: { $0["system"]?.stringValue == Self.system }) else { return resource }
        var o = resource
        var meta = o["meta"]?.objectValue ?? JSONObject()
        let kept = tags.filter { $0["system"]?.stringValue != Self.system }
        meta["tag"] = kept.isEmpty ? nil : .array(kept)
        o["meta"] = meta.isEmpty ? nil : .object(meta)
        return o
    }

    /// The resource with its mark, added after validation (`WriteEnricher.finish`); nil: none.
    public func finish(_ o: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject? {
        guard let mark = try await mark(of: o, type: type, facility: facility) else { return nil }
        var tagged = o
        var meta = tagged["meta"]?.objectValue ?? JSONObject()
        meta["tag"] = .array((meta["tag"]?.arrayValue ?? []) + [mark])
        tagged["meta"] = .object(meta)
        return tagged
    }

    /// The result's mark: the stored version's for the same result, else stamped now; nil: none.
    func mark(of o: JSONObject, type: String, facility: String?) async throws -> JSON? {
        guard Self.types.contains(type) else { return nil }
        if let id = o["id"]?.stringValue, let stored = try await store.read(ResourceKey(type, id)), !stored.deleted,
           let content = stored.content, case .object(let old) = try JSONParser.parse(Array(content.readableBytesView)),
           Self.sameResult(old, o, type: type) {
            // The same result (item and time unchanged) keeps the stored version's mark, or its
            // absence: never recomputed. A changed item or time is judged anew, as a new result.
            return old["meta"]?["tag"]?.arrayValue?.first { $0["system"]?.stringValue == Self.system }
        }
        guard let facility else { return nil }
        let (catalogue, passes) = try await current()
        guard !catalogue.items.isEmpty, let item = Self.item(of: o, type: type, catalogue), let scope = Self.scope(
            item, facility: facility, passes: passes, at: Self.effective(o, type: type) ?? Int64(Date().timeIntervalSince1970 * 1_000_000))
        else { return nil }
        return Self.tag(scope)
    }

    /// Whether two versions are of the same result: the same codes and the same effective time.
    static func sameResult(_ a: JSONObject, _ b: JSONObject, type: String) -> Bool {
        let codes = type == "ImagingStudy" ? "procedureCode" : "code"
        return a[codes] == b[codes] && effective(a, type: type) == effective(b, type: type)
    }

    /// The mark's Coding: system and code, no display. The code names the scope; a display would
    /// cost each marked result a `_tag:text` index row, 4 % of the ingest rate of results
    /// (bench/sharing.py; ADR 024), for text that `RecognitionScope.chinese` gives any viewer.
    static func tag(_ scope: RecognitionScope) -> JSON { tags[scope]! }

    static let tags: [RecognitionScope: JSON] = Dictionary(uniqueKeysWithValues: RecognitionScope.allCases.map { scope in
        (scope, .object(JSONObject([("system", .string(system)), ("code", .string("HR-" + scope.rawValue))])))
    })

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
        func time(_ value: JSON?) -> Int64? {
            value?.stringValue.flatMap { FHIRDateTime.parse($0, kind: .dateTime)?.low }
        }
        if type == "ImagingStudy" { return time(o["started"]) }
        // In order, each looked up only when those before it give no time (no closures built per result).
        return time(o["effectiveDateTime"]) ?? time(o["effectiveInstant"]) ?? time(o["effectivePeriod"]?["start"]) ?? time(o["issued"])
    }

    /// The widest scope the facility's passes for the item give at a moment, narrowed to the item's.
    static func scope(_ item: RecognitionItem, facility: String, passes: Passes, at micros: Int64) -> RecognitionScope? {
        guard let windows = passes[facility]?[item.system]?[item.code] else { return nil }
        let day = QualityPass.dayNumber(micros)
        var widest: RecognitionScope?
        for w in windows where w.from <= day && day <= w.to { widest = max(widest ?? w.scope, w.scope) }
        return widest.map { min($0, item.scope) }
    }
}
