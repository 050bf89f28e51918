import Access
import FHIRModel
import Foundation
import Logging
import NIOCore
import Platform
import Prometheus
import Store

/// The reminder service (提醒服务, WS/T 790 part 18; ADR 023): rules turn the platform's data into
/// `Communication` resources addressed to residents and practitioners — stored, searchable, read
/// by their recipients, and delivered like any other change through subscriptions (a resident's
/// app subscribes to `Communication?recipient=Patient/…`). The care and sharing domains bring
/// their rules; this one ships with the appointment reminder.
///
/// A reminder's id is derived from what it is about, and it is written as a create that must not
/// find its id taken: every node may run the sweep, and a reminder is written once.
public protocol ReminderRule: Sendable {
    /// The rule's code in `ReminderService.typeSystem` (the Communication's category).
    var code: String { get }
    /// The reminders due at `now` (those already written are skipped by their id).
    func due(now: Int64, searches: SearchService) async throws -> [Reminder]
}

/// One reminder to one recipient.
public struct Reminder: Sendable {
    /// Identifies the reminder among all of its rule's (the same key: the same reminder).
    public var key: String
    public var recipient: String
    public var subject: String?
    public var about: [String]
    /// Chinese text first (the residents' language), then English.
    public var text: (zh: String, en: String)
    /// The security labels of what it is about (a reminder tells what its subject does).
    public var security: [JSON] = []

    public init(key: String, recipient: String, subject: String?, about: [String], text: (zh: String, en: String)) {
        self.key = key
        self.recipient = recipient
        self.subject = subject
        self.about = about
        self.text = text
    }
}

public struct ReminderService: Sendable {
    public static let typeSystem = "https://huitong.health/fhir/CodeSystem/reminder-type"
    public static let identifierSystem = "https://huitong.health/fhir/sid/reminder"

    let service: FHIRService
    let searches: SearchService
    let rules: [any ReminderRule]
    let interval: Duration
    let metrics: PrometheusCollectorRegistry?
    let logger: Logger

    public init(service: FHIRService, searches: SearchService, rules: [any ReminderRule] = [AppointmentReminder()],
                interval: Duration = .seconds(60), metrics: PrometheusCollectorRegistry? = nil, logger: Logger) {
        self.service = service.acting(as: .platform)
        // The rules' scans are the platform's own bookkeeping, every minute: not audited as reads
        // (the reminders they write are audited, as every write).
        var scans = searches.acting(as: .platform)
        scans.auditing = false
        self.searches = scans
        self.rules = rules
        self.interval = interval
        self.metrics = metrics
        self.logger = logger
    }

    /// Sweeps every `interval` until cancelled.
    public func run() async {
        while !Task.isCancelled {
            do {
                _ = try await sweep(now: Int64(Date().timeIntervalSince1970 * 1_000_000))
            } catch {
                if Task.isCancelled { break }
                logger.warning("Reminder sweep failed: \(error)")
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Writes the reminders due now that are not written yet; returns how many it wrote.
    @discardableResult
    public func sweep(now: Int64) async throws -> Int {
        var written = 0
        for rule in rules {
            for reminder in try await rule.due(now: now, searches: searches) {
                let id = "reminder-" + String(ClientRegistry.sha256Hex(rule.code + "|" + reminder.key).prefix(40))
                // Written before (and perhaps deleted by its recipient since): not again.
                if try await service.store.read(ResourceKey("Communication", id)) != nil { continue }
                var request = WriteRequest.generated(communication(rule, reminder, id: id, now: now), key: ResourceKey("Communication", id),
                                                     method: "PUT", validate: true)
                request.mustNotExist = true
                do {
                    _ = try await service.writePipeline.write([request], as: .operation("reminder"))
                    written += 1
                    metrics?.makeCounter(
                        descriptor: MetricNameDescriptor(metricName: "huitong_reminders_total", unitName: "",
                                                         helpText: "Reminders written (Communication), by rule"),
                        labels: [("rule", rule.code)]).increment()
                } catch let error as FHIRError where error.category == .conflict {
                    continue   // written meanwhile by another node
                } catch StoreError.alreadyExists {
                    continue
                }
            }
        }
        return written
    }

    func communication(_ rule: any ReminderRule, _ r: Reminder, id: String, now: Int64) -> JSONObject {
        var o = JSONObject([
            ("resourceType", .string("Communication")),
            ("id", .string(id)),
            ("identifier", .array([.object(JSONObject([("system", .string(Self.identifierSystem)), ("value", .string(rule.code + "/" + r.key))]))])),
            // Sent and waiting to be read: the recipient sets `received` (and status completed).
            ("status", .string("in-progress")),
            ("category", .array([.object(JSONObject([("coding", .array([.object(JSONObject([("system", .string(Self.typeSystem)),
                                                                                            ("code", .string(rule.code))]))]))]))])),
            ("priority", .string("routine")),
        ])
        if !r.security.isEmpty { o["meta"] = .object(JSONObject([("security", .array(r.security))])) }
        if let subject = r.subject { o["subject"] = .object(JSONObject([("reference", .string(subject))])) }
        o["about"] = .array(r.about.map { .object(JSONObject([("reference", .string($0))])) })
        o["sent"] = .string(FHIRDateTime.formatInstant(micros: now))
        o["recipient"] = .array([.object(JSONObject([("reference", .string(r.recipient))]))])
        o["payload"] = .array([r.text.zh, r.text.en].map { .object(JSONObject([("contentString", .string($0))])) })
        return o
    }
}

/// 预约提醒: a reminder to every patient and practitioner taking part in a booked appointment, once,
/// within 24 hours before it starts (again if it is moved).
public struct AppointmentReminder: ReminderRule {
    public let code = "appointment"
    public var ahead: Int64 = 24 * 3600 * 1_000_000

    public init() {}

    public func due(now: Int64, searches: SearchService) async throws -> [Reminder] {
        let from = FHIRDateTime.formatInstant(micros: now), until = FHIRDateTime.formatInstant(micros: now + ahead)
        var parsed = try searches.parse(type: "Appointment", query: "status=booked&date=gt\(from)&date=le\(until)&_count=500", strict: true)
        var reminders: [Reminder] = []
        while true {
            let result = try await searches.run(parsed)
            for record in result.matches {
                guard let content = record.content, case .object(let a) = try JSONParser.parse(Array(content.readableBytesView)),
                      let start = a["start"]?.stringValue else { continue }
                let reference = "Appointment/\(record.key.id)"
                let actors = (a["participant"]?.arrayValue ?? []).compactMap { p -> String? in
                    guard p["status"]?.stringValue != "declined", let ref = p["actor"]?["reference"]?.stringValue,
                          ref.hasPrefix("Patient/") || ref.hasPrefix("Practitioner/") else { return nil }
                    return ref
                }
                let patient = actors.first { $0.hasPrefix("Patient/") }
                let what = a["serviceType"]?.arrayValue?.first?["text"]?.stringValue
                    ?? a["serviceType"]?.arrayValue?.first?["coding"]?.arrayValue?.first?["display"]?.stringValue
                    ?? a["description"]?.stringValue
                let when = Self.localTime(start)
                for actor in actors {
                    var reminder = Reminder(
                        key: "\(reference)/\(start)/\(actor)", recipient: actor, subject: patient, about: [reference],
                        text: (zh: "预约提醒：您的\(what.map { "“\($0)”" } ?? "")预约将于\(when.zh)开始，请按时就诊。",
                               en: "Reminder: your appointment\(what.map { " (\($0))" } ?? "") starts at \(when.en)."))
                    reminder.security = a["meta"]?["security"]?.arrayValue ?? []
                    reminders.append(reminder)
                }
            }
            guard let next = result.next else { break }
            parsed.page = next
        }
        return reminders
    }

    /// The start in China Standard Time (UTC+8), as residents read it.
    static func localTime(_ start: String) -> (zh: String, en: String) {
        guard let micros = FHIRDateTime.parse(start, kind: .instant)?.low else { return (start, start) }
        let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        let zh = String(format: "%d年%d月%d日 %02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!)
        let en = String(format: "%04d-%02d-%02d %02d:%02d (UTC+8)", c.year!, c.month!, c.day!, c.hour!, c.minute!)
        return (zh, en)
    }
}
