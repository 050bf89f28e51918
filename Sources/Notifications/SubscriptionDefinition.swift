import Access
import FHIRModel
import Foundation
import Platform
import Store

/// What the platform reads of a stored `Subscription` (R4, with the Subscriptions Backport IG 1.1.0
/// extensions): the criteria, the channel, the payload content and the owner on whose behalf every
/// notification is decided.
public struct SubscriptionDefinition: Sendable, Equatable {
    public static let backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    public static let payloadContent = backport + "backport-payload-content"
    public static let heartbeatPeriod = backport + "backport-heartbeat-period"
    public static let maxCount = backport + "backport-max-count"
    /// The platform record kind of a subscription's owner: who last wrote it as a client (ADR 023).
    public static let ownerKind = "subscription-owner"

    public enum Channel: String, Sendable { case restHook = "rest-hook", websocket }
    public enum Content: String, Sendable { case empty, idOnly = "id-only", fullResource = "full-resource" }

    public let id: String
    public let version: Int
    public let status: String
    /// The search URL (`Observation?patient=...`) as written, and its resource type; or a topic's
    /// canonical URL (`topic`), with the subscriber's `filters` (`backport-filter-criteria`).
    public let criteria: String
    public let type: String
    public let query: String
    public let topic: String?
    public let filters: [(type: String, query: String)]
    public let channel: Channel
    public let endpoint: String?
    /// `Name: value` lines of `channel.header`.
    public let headers: [(name: String, value: String)]
    public let content: Content
    public let contentType: String
    /// Seconds; nil: no heartbeats.
    public let heartbeat: Int?
    /// Events per notification at most (`backport-max-count`; absent: one).
    public let eventsPerNotification: Int
    public let end: Int64?
    public let owner: Owner?

    public static func == (a: Self, b: Self) -> Bool { a.id == b.id && a.version == b.version }

    /// The principal a subscription acts for, as far as a notification's access decision needs it.
    public struct Owner: Sendable, Equatable {
        public var kind: Principal.Kind
        public var subject: String
        public var role: Role
        public var facility: String?
        public var scopes: String
        public var patient: String?

        public init(_ p: Principal) {
            kind = p.kind
            subject = p.subject
            role = p.role
            facility = p.facility
            scopes = SMARTScope.format(p.scopes)
            patient = p.patient
        }

        /// The owner as kept in its platform record (`subscription-owner`, beside the resource).
        init?(record content: String) {
            guard let o = (try? JSONParser.parse(Array(content.utf8)))?.objectValue,
                  let kind = o["kind"]?.stringValue.flatMap(Principal.Kind.init), let subject = o["subject"]?.stringValue,
                  let role = o["role"]?.stringValue.flatMap(Role.init) else { return nil }
            self.kind = kind
            self.subject = subject
            self.role = role
            facility = o["facility"]?.stringValue
            scopes = o["scopes"]?.stringValue ?? ""
            patient = o["patient"]?.stringValue
        }

        var record: String {
            var o = JSONObject([("kind", .string(kind.rawValue)), ("subject", .string(subject)), ("role", .string(role.rawValue)),
                                ("scopes", .string(scopes))])
            if let facility { o["facility"] = .string(facility) }
            if let patient { o["patient"] = .string(patient) }
            return JSONWriter.string(.object(o))
        }

        /// The principal at the time of a notification.
        public var principal: Principal {
            Principal(kind: kind, subject: subject, role: role, facility: facility, scopes: SMARTScope.parseList(scopes), patient: patient)
        }
    }

    /// Reads a stored Subscription; nil when it is not one the platform serves (no criteria, an
    /// unsupported channel).
    public init?(id: String, version: Int, _ o: JSONObject, owner: Owner?) {
        guard let criteria = o["criteria"]?.stringValue, let channel = o["channel"],
              let channelType = channel["type"]?.stringValue.flatMap(Channel.init) else { return nil }
        if Self.isTopic(criteria) {
            topic = criteria
            type = ""
            query = ""
            filters = Self.filterCriteria(o).map(Self.split)
        } else {
            (type, query) = Self.split(criteria)
            topic = nil
            filters = []
        }
        self.id = id
        self.version = version
        self.status = o["status"]?.stringValue ?? "requested"
        self.criteria = criteria
        self.channel = channelType
        endpoint = channel["endpoint"]?.stringValue
        headers = (channel["header"]?.arrayValue ?? []).compactMap { h in
            guard let line = h.stringValue, let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]).trimmingCharacters(in: .whitespaces), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        let payload = channel["payload"]
        contentType = payload?.stringValue ?? "application/fhir+json"
        content = Self.extensionValue(channel["_payload"], Self.payloadContent, "valueCode")
            .flatMap(Content.init) ?? (payload == nil ? .empty : .idOnly)
        heartbeat = Self.extensionValue(channel, Self.heartbeatPeriod, "valueUnsignedInt").flatMap { Int($0) }
        eventsPerNotification = min(1000, max(1, Self.extensionValue(channel, Self.maxCount, "valuePositiveInt").flatMap { Int($0) } ?? 1))
        end = o["end"]?.stringValue.flatMap { FHIRDateTime.parse($0, kind: .instant)?.low }
        self.owner = owner
    }

    /// A topic's canonical URL rather than a search.
    static func isTopic(_ criteria: String) -> Bool {
        criteria.hasPrefix("http://") || criteria.hasPrefix("https://") || criteria.hasPrefix("urn:")
    }

    /// The `backport-filter-criteria` searches on `_criteria`.
    static func filterCriteria(_ o: JSONObject) -> [String] {
        (o["_criteria"]?["extension"]?.arrayValue ?? []).compactMap { e in
            e["url"]?.stringValue == SubscriptionTopic.filterCriteria ? e["valueString"]?.stringValue : nil
        }
    }

    /// The resource types whose changes the subscription watches.
    public var types: Set<String> {
        if let topic { return SubscriptionTopic.named(topic)?.types ?? [] }
        return [type]
    }

    /// `Observation?code=x` → ("Observation", "code=x").
    static func split(_ criteria: String) -> (type: String, query: String) {
        let trimmed = criteria.hasPrefix("/") ? String(criteria.dropFirst()) : criteria
        guard let q = trimmed.firstIndex(of: "?") else { return (trimmed, "") }
        return (String(trimmed[..<q]), String(trimmed[trimmed.index(after: q)...]))
    }

    static func extensionValue(_ element: JSON?, _ url: String, _ member: String) -> String? {
        guard let ext = element?["extension"]?.arrayValue?.first(where: { $0["url"]?.stringValue == url }) else { return nil }
        switch ext[member] {
        case .string(let s)?: return s
        case .number(let n)?: return n
        default: return nil
        }
    }
}
