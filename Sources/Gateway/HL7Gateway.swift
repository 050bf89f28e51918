import Access
import FHIRModel
import Foundation
import Platform
import HL7v2
import Prometheus
import Store
import Synchronization

/// The HL7 v2 channel into the platform: one MLLP frame in, its ACK out. A message is taken only
/// from a registered sender (MSH-3/MSH-4 → a facility client, `huitong client create
/// --hl7-sender`), mapped to one FHIR transaction (`V2ToFHIR`) and committed through the same
/// service, pipeline, access decision and audit trail as REST, on behalf of that client. AA: all
/// of it is stored. AE (wrong content) and AR (not taken) store nothing of it. A message sent
/// again (same sender, same MSH-10) gets its first ACK again and changes nothing: the control id
/// is recorded in the same transaction as the data.
public struct HL7Gateway: Sendable {
    let service: FHIRService
    let senders: SenderDirectory
    public let counters: HL7Counters
    static let versions: Set<String> = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"]
    static let seenKind = "hl7-message"
    static let rejectedKind = "hl7-rejected"
    /// How long the raw message of an AE/AR is kept for diagnosis.
    static let keepRejected: Int64 = 30 * 24 * 3600 * 1_000_000

    /// - Parameter metrics: where the per-sender counters are also exported (`/metrics`).
    public init(service: FHIRService, metrics: PrometheusCollectorRegistry? = nil) {
        self.service = service
        self.senders = SenderDirectory(store: service.store)
        self.counters = HL7Counters(metrics: metrics)
    }

    /// Answers one frame (an ACK, in the message's character set).
    public func handle(_ frame: MLLPFrame, peer: String) async -> [UInt8] {
        switch frame {
        case .message(let bytes):
            return await handle(bytes, peer: peer)
        case .broken(let prefix, let reason):
            let header = (try? Charsets.text(of: prefix)).flatMap { try? ER7.parse($0.0) }?["MSH"]
            let problem = HL7Problem(.reject, "100", reason)
            await keepRejected(prefix, sender: header.map(Self.senderName) ?? peer, problem: problem)
            counters.count(header.map(Self.senderName) ?? "unknown", "AR")
            return answer(Acknowledgment.make(to: header, code: "AR", problems: [problem]), charset: .utf8)
        }
    }

    func handle(_ bytes: [UInt8], peer: String) async -> [UInt8] {
        var header: HL7Segment?
        var charset = Charset.utf8
        var senderName = "unknown"
        func refuse(_ problem: HL7Problem) async -> [UInt8] {
            counters.count(senderName, problem.code.rawValue)
            await keepRejected(bytes, sender: senderName, problem: problem)
            return answer(Acknowledgment.make(to: header, code: problem.code.rawValue, problems: [problem]), charset: charset)
        }
        let message: HL7Message
        do {
            let (text, used) = try Charsets.text(of: bytes)
            charset = used
            message = try ER7.parse(text)
        } catch {
            return await refuse(HL7Problem(.reject, "100", "Unreadable message: \(error)", at: ("MSH", 1, 0)))
        }
        guard let msh = message["MSH"], message.segments.first?.id == "MSH" else {
            return await refuse(HL7Problem(.reject, "100", "The message does not start with MSH", at: ("MSH", 1, 0)))
        }
        header = msh
        senderName = Self.senderName(msh)
        guard let control = msh[10].value else {
            return await refuse(HL7Problem(.reject, "101", "MSH-10 (message control id) is required", at: ("MSH", 1, 10)))
        }
        guard let version = msh[12].value, Self.versions.contains(version) else {
            return await refuse(HL7Problem(.reject, "203", "MSH-12 version '\(msh[12].value ?? "")' is not supported (2.3 to 2.5.1)", at: ("MSH", 1, 12)))
        }
        guard let client = await senders.client(application: msh[3].value, facility: msh[4].value) else {
            return await refuse(HL7Problem(.reject, "204", "Unknown sender \(senderName): register it with `huitong client create --hl7-sender`", at: ("MSH", 1, 4)))
        }
        let seenID = client.id + "|" + control
        let bundle: JSON
        do {
            bundle = try V2ToFHIR(facility: client.facility ?? "").bundle(for: message)
        } catch {
            return await refuse(error)
        }
        let ack = ER7.serialize(Acknowledgment.make(to: msh, code: "AA"))
        let principal = Principal(kind: .client, subject: client.id, role: client.role, facility: client.facility,
                                  scopes: SMARTScope.parseList(client.scopes))
        let acting = service.acting(as: principal, from: RequestOrigin(address: peer))
            .recording([RecordWrite(PlatformRecord(kind: Self.seenKind, id: seenID, content: ack), mode: .insertNew(now: Self.now()))])
        do {
            _ = try await BundleProcessor(service: acting).process(bundle, returnRepresentation: false)
        } catch let error as FHIRError {
            // A message seen before (the control id is recorded with its data): its first ACK.
            if error.category == .conflict, let seen = try? await service.store.record(kind: Self.seenKind, id: seenID, now: Self.now()) {
                counters.count(senderName, "duplicate")
                return answer(seen.content, charset: charset)
            }
            return await refuse(Self.problem(error))
        } catch {
            return await refuse(HL7Problem(.reject, "207", "Application error; incident \(Incident.report(error)) is in the platform's log"))
        }
        counters.count(senderName, "AA")
        return answer(ack, charset: charset)
    }

    /// A FHIR refusal as the HL7 answer: the content was wrong (AE), or the sender may not do this
    /// or the platform failed (AR).
    static func problem(_ error: FHIRError) -> HL7Problem {
        let text = error.issues.map(\.diagnostics).joined(separator: "; ")
        switch error.category {
        case .invalid, .businessRule: return HL7Problem(.error, "102", text)
        case .notFound: return HL7Problem(.error, "204", text)  // e.g. a merge's prior patient is not known
        case .conflict, .preconditionFailed: return HL7Problem(.error, "205", text)
        case .unauthorized, .forbidden: return HL7Problem(.reject, "207", "Not allowed: \(text)")
        default: return HL7Problem(.reject, "207", text)
        }
    }

    static func senderName(_ msh: HL7Segment) -> String { (msh[3].value ?? "") + "^" + (msh[4].value ?? "") }

    func answer(_ ack: HL7Message, charset: Charset) -> [UInt8] { answer(ER7.serialize(ack), charset: charset) }
    func answer(_ text: String, charset: Charset) -> [UInt8] { charset.encode(text) }

    /// The raw message of an AE/AR, kept 30 days for diagnosis (platform records are not served
    /// by the FHIR API). The message and the error text (which may quote a value) hold patient
    /// data: sealed with the identifier keyring when there is one (`sealed`: the JSON
    /// `{"error":…,"message":<base64>}`), as other PHI at rest; sender, codes and location stay
    /// readable for counting.
    func keepRejected(_ bytes: [UInt8], sender: String, problem: HL7Problem) async {
        let detail = JSON.object(JSONObject([("error", .string(problem.description)),
                                             ("message", .string(Data(bytes.prefix(1 << 20)).base64EncodedString()))]))
        var members: [(String, JSON)] = [("sender", .string(sender)), ("code", .string(problem.code.rawValue)),
                                         ("hl7Code", .string(problem.hl7Code))]
        if let l = problem.location { members.append(("location", .string("\(l.segment)^\(l.sequence)^\(l.field)"))) }
        if let protection = service.pipeline.protection {
            members.append(("sealed", .string(protection.seal(JSONWriter.bytes(detail), context: Self.rejectedKind))))
        } else {
            members.append(("detail", detail))
        }
        let content = JSON.object(JSONObject(members))
        try? await service.store.commitRecords([RecordWrite(PlatformRecord(kind: Self.rejectedKind, id: RandomUUID.make(),
                                                                           content: String(decoding: JSONWriter.bytes(content), as: UTF8.self),
                                                                           expires: Self.now() + Self.keepRejected))])
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }
}

/// Registered HL7 senders, read from the client registrations (again after a few seconds, so a
/// client registered meanwhile is known without a restart).
final class SenderDirectory: Sendable {
    let store: any ResourceStore
    private let cache = Mutex<(loaded: Date, bySender: [String: ClientRegistration])>((.distantPast, [:]))

    init(store: any ResourceStore) {
        self.store = store
    }

    func client(application: String?, facility: String?) async -> ClientRegistration? {
        let known: [String: ClientRegistration]
        let cached = cache.withLock { $0 }
        if Date().timeIntervalSince(cached.loaded) < 5 {
            known = cached.bySender
        } else {
            var map: [String: ClientRegistration] = [:]
            for record in (try? await store.records(kind: ClientRegistration.kind, now: HL7Gateway.now())) ?? [] {
                guard let client = try? JSONDecoder().decode(ClientRegistration.self, from: Data(record.content.utf8)),
                      !client.disabled, client.facility != nil else { continue }
                for sender in client.hl7Senders ?? [] { map[sender] = client }
            }
            known = map
            cache.withLock { $0 = (Date(), map) }
        }
        let app = application ?? "", fac = facility ?? ""
        return known[app + "^" + fac] ?? known["^" + fac]
    }
}

/// Per-sender counts (received, AA, AE, AR, duplicates) and the time of the last message, for
/// operators: JSON at `/hl7/status`, and Prometheus `huitong_hl7_messages_total{sender,outcome}`
/// and `huitong_hl7_last_message_timestamp_seconds{sender}` at `/metrics`.
public final class HL7Counters: Sendable {
    public struct Sender: Sendable, Codable {
        public var counts: [String: Int] = [:]
        public var last: Date?
    }

    private let state = Mutex<[String: Sender]>([:])
    let metrics: PrometheusCollectorRegistry?

    init(metrics: PrometheusCollectorRegistry?) {
        self.metrics = metrics
    }

    func count(_ sender: String, _ outcome: String) {
        let now = Date()
        state.withLock { s in
            s[sender, default: Sender()].counts[outcome, default: 0] += 1
            s[sender, default: Sender()].counts["received", default: 0] += 1
            s[sender]?.last = now
        }
        guard let metrics else { return }
        metrics.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "huitong_hl7_messages_total", unitName: "",
                                             helpText: "HL7 v2 messages received over MLLP, by sender (MSH-3^MSH-4) and answer (AA, AE, AR, duplicate)"),
            labels: [("sender", sender), ("outcome", outcome)]).increment()
        metrics.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "huitong_hl7_last_message_timestamp_seconds", unitName: "",
                                             helpText: "When the sender's last HL7 v2 message arrived (Unix time)"),
            labels: [("sender", sender)]).set(now.timeIntervalSince1970)
    }

    public var snapshot: [String: Sender] { state.withLock { $0 } }
}
