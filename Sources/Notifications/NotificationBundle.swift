import FHIRModel
import Foundation

/// A stored notification event of a subscription: its number, when it happened and what it is
/// about (`type/id/_history/version`).
public struct SubscriptionEvent: Sendable, Equatable {
    public let number: Int
    public let timestamp: Int64
    public let type: String
    public let id: String
    public let version: Int

    public init(number: Int, timestamp: Int64, type: String, id: String, version: Int) {
        self.number = number
        self.timestamp = timestamp
        self.type = type
        self.id = id
        self.version = version
    }

    /// The record id: the number at a fixed width, so that record order is number order.
    public static func recordID(_ number: Int) -> String { String(format: "%015d", number) }

    var content: String {
        JSONWriter.string(.object(JSONObject([("t", .number(String(timestamp))), ("type", .string(type)), ("id", .string(id)),
                                               ("v", .number(String(version)))])))
    }

    init?(number: Int, content: String) {
        guard let o = (try? JSONParser.parse(Array(content.utf8)))?.objectValue, let t = o["t"]?.numberText.flatMap({ Int64($0) }),
              let type = o["type"]?.stringValue, let id = o["id"]?.stringValue, let v = o["v"]?.numberText.flatMap({ Int($0) }) else { return nil }
        self.init(number: number, timestamp: t, type: type, id: id, version: v)
    }
}

/// The notification Bundle of the Subscriptions Backport IG (1.1.0, R4): a `history` Bundle whose
/// first entry is a `Parameters` subscription status, then the focus resources the payload
/// content carries (`id-only`: their URLs; `full-resource`: the resources).
public enum NotificationBundle {
    public static let bundleProfile = SubscriptionDefinition.backport + "backport-subscription-notification-r4"
    public static let statusProfile = SubscriptionDefinition.backport + "backport-subscription-status-r4"

    public enum Kind: String, Sendable { case handshake, heartbeat, eventNotification = "event-notification", queryStatus = "query-status", queryEvent = "query-event" }

    /// - Parameters:
    ///   - events: each with the focus resource when the content is `full-resource` (nil: not readable
    ///     or not asked for; the event is then sent without it).
    public static func make(base: String, subscription: SubscriptionDefinition, status: String, kind: Kind, eventsSinceStart: Int,
                            events: [(SubscriptionEvent, JSON?)], content: SubscriptionDefinition.Content, now: Int64, error: String? = nil) -> JSON {
        let subscriptionURL = base + "/Subscription/" + subscription.id
        var parameters: [JSON] = [
            parameter("subscription", "valueReference", .object(JSONObject([("reference", .string(subscriptionURL))]))),
        ]
        if let topic = subscription.topic { parameters.append(parameter("topic", "valueCanonical", .string(topic))) }
        parameters += [
            parameter("status", "valueCode", .string(status)),
            parameter("type", "valueCode", .string(kind.rawValue)),
            parameter("events-since-subscription-start", "valueString", .string(String(eventsSinceStart))),
        ]
        for (event, _) in events {
            var parts: [JSON] = [
                parameter("event-number", "valueString", .string(String(event.number))),
                parameter("timestamp", "valueInstant", .string(FHIRDateTime.formatInstant(micros: event.timestamp))),
            ]
            if content != .empty {
                parts.append(parameter("focus", "valueReference",
                                       .object(JSONObject([("reference", .string("\(base)/\(event.type)/\(event.id)/_history/\(event.version)"))]))))
            }
            parameters.append(.object(JSONObject([("name", .string("notification-event")), ("part", .array(parts))])))
        }
        if let error {
            parameters.append(parameter("error", "valueCodeableConcept", .object(JSONObject([("text", .string(error))]))))
        }
        let statusID = UUID().uuidString.lowercased()
        var entries: [JSON] = [.object(JSONObject([
            ("fullUrl", .string("urn:uuid:" + statusID)),
            ("resource", .object(JSONObject([
                ("resourceType", .string("Parameters")), ("id", .string(statusID)),
                ("meta", .object(JSONObject([("profile", .array([.string(statusProfile)]))]))),
                ("parameter", .array(parameters)),
            ]))),
            ("request", .object(JSONObject([("method", .string("GET")), ("url", .string(subscriptionURL + "/$status"))]))),
            ("response", .object(JSONObject([("status", .string("200"))]))),
        ]))]
        if content != .empty {
            for (event, resource) in events {
                var entry = JSONObject([("fullUrl", .string("\(base)/\(event.type)/\(event.id)"))])
                if content == .fullResource, let resource { entry["resource"] = resource }
                entry["request"] = .object(JSONObject([("method", .string(event.version == 1 ? "POST" : "PUT")),
                                                        ("url", .string(event.version == 1 ? event.type : "\(event.type)/\(event.id)"))]))
                entry["response"] = .object(JSONObject([("status", .string(event.version == 1 ? "201" : "200"))]))
                entries.append(.object(entry))
            }
        }
        return .object(JSONObject([
            ("resourceType", .string("Bundle")), ("id", .string(UUID().uuidString.lowercased())),
            ("meta", .object(JSONObject([("profile", .array([.string(bundleProfile)]))]))),
            ("type", .string("history")),
            ("timestamp", .string(FHIRDateTime.formatInstant(micros: now))),
            ("entry", .array(entries)),
        ]))
    }

    static func parameter(_ name: String, _ valueName: String, _ value: JSON) -> JSON {
        .object(JSONObject([("name", .string(name)), (valueName, value)]))
    }
}
