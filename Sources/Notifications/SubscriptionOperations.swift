import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store

/// `Subscription/[id]/$status` and `$events` of the Subscriptions Backport IG (1.1.0), registered
/// like every domain's operations (ADR 019). A subscription's status and events are its owner's
/// (and the administrators' and operators'): anyone else is refused.
extension OperationRegistry {
    public mutating func registerNotifications() {
        register(.subscriptionStatus)
        register(.subscriptionEvents)
        register(.subscriptionWebSocketToken)
    }
}

extension RegisteredOperation {
    private typealias P = Parameter

    /// The subscription, if the caller may see its notifications.
    static func ownSubscription(_ service: FHIRService, _ request: OperationRequest) async throws -> SubscriptionDefinition {
        guard let id = request.id else { throw FHIRError(.invalid, code: "required", "The operation is asked of a Subscription: Subscription/[id]/$\(request.name)") }
        return try await ownSubscription(service, id)
    }

    /// - Parameter operatorsToo: operators may see a subscription's status and events (read on
    ///   their own behalf), not take its notifications (read on the owner's).
    static func ownSubscription(_ service: FHIRService, _ id: String, operatorsToo: Bool = true) async throws -> SubscriptionDefinition {
        let result = try await service.read("Subscription", id)
        guard let content = result.content, case .object(let o) = try JSONParser.parse(Array(content.readableBytesView)),
              let definition = SubscriptionDefinition(id: id, version: result.version ?? 1, o, owner: try await service.store
                .record(kind: SubscriptionDefinition.ownerKind, id: id, now: 0).flatMap { .init(record: $0.content) }) else {
            throw FHIRError(.invalid, code: "not-supported", "Subscription/\(id) is not one the platform delivers (criteria and a rest-hook or websocket channel)")
        }
        let principal = service.principal
        let mayAll = (principal.role == .administrator || (operatorsToo && principal.role == .platformOperator))
            || [.development, .platform].contains(principal.kind)
        guard mayAll || (definition.owner?.kind == principal.kind && definition.owner?.subject == principal.subject) else {
            throw FHIRError(.forbidden, code: "forbidden", "Subscription/\(id) belongs to another client or user")
        }
        return definition
    }

    static let subscriptionStatus = RegisteredOperation(
        name: "status", resourceTypes: ["Subscription"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "Subscription status",
        documentation: "The subscription's status, how many events it has had, how many were delivered, and the last delivery error.",
        parameters: [P("return", .out, min: 1, type: "Bundle", "A searchset Bundle with the subscription status (Parameters)")],
        definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
        access: { _ in (.read, "Subscription") },
        handler: { service, request in
            let definition = try await ownSubscription(service, request)
            let now = SubscriptionDelivery.nowMicros
            let count = try await SubscriptionEngine.eventCount(definition.id, store: service.store, now: now)
            let state = try await service.store.record(kind: SubscriptionDelivery.stateKind, id: definition.id, now: now)
                .map { SubscriptionDelivery.State($0.content) } ?? SubscriptionDelivery.State()
            let bundle = NotificationBundle.make(base: request.baseURL, subscription: definition, status: definition.status, kind: .queryStatus,
                                                 eventsSinceStart: count, events: [], content: .empty, now: now, error: state.error)
            guard case .object(var b) = bundle, let entry = b["entry"]?.arrayValue?.first, case .object(var status) = entry["resource"] ?? .null,
                  case .array(var parameters) = status["parameter"] ?? .null else { return .resource(bundle) }
            parameters.append(NotificationBundle.parameter("events-delivered", "valueString", .string(String(state.delivered))))
            status["parameter"] = .array(parameters)
            b["type"] = .string("searchset")
            b["meta"] = nil
            b["total"] = .number("1")
            b["entry"] = .array([.object(JSONObject([("fullUrl", entry["fullUrl"] ?? .null), ("resource", .object(status)),
                                                      ("search", .object(JSONObject([("mode", .string("match"))])))]))])
            return .resource(.object(b))
        })

    static let subscriptionEvents = RegisteredOperation(
        name: "events", resourceTypes: ["Subscription"], levels: [.instance], allowsGet: true, affectsState: false,
        title: "Replay subscription events",
        documentation: "The stored events of the subscription from eventsSinceNumber to eventsUntilNumber (inclusive, at most 1,000), "
            + "as a notification Bundle of type query-event. full-resource content is read on the caller's behalf.",
        parameters: [P("eventsSinceNumber", .in, type: "string", "The first event number (default 1)"),
                     P("eventsUntilNumber", .in, type: "string", "The last event number (default: the newest)"),
                     P("content", .in, type: "code", "empty | id-only | full-resource (default: the subscription's)"),
                     P("return", .out, min: 1, type: "Bundle", "A history Bundle: the status, then the events")],
        definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
        access: { _ in (.read, "Subscription") },
        handler: { service, request in
            let definition = try await ownSubscription(service, request)
            func number(_ name: String) throws -> Int? {
                guard let text = request.parameter(name) else { return nil }
                guard let n = Int(text), n >= 0 else {
                    throw FHIRError(.invalid, code: "value", "\(name) is an event number, not '\(text)'", at: name)
                }
                return n
            }
            let since = try number("eventsSinceNumber") ?? 1
            let until = try number("eventsUntilNumber") ?? Int.max
            var content = definition.content
            if let asked = request.parameter("content") {
                guard let c = SubscriptionDefinition.Content(rawValue: asked) else {
                    throw FHIRError(.invalid, code: "value", "content is empty, id-only or full-resource, not '\(asked)'", at: "content")
                }
                content = c
            }
            let now = SubscriptionDelivery.nowMicros
            let count = try await SubscriptionEngine.eventCount(definition.id, store: service.store, now: now)
            let records = try await service.store.records(kind: SubscriptionEngine.eventKind + definition.id,
                                                          after: SubscriptionEvent.recordID(max(since, 1) - 1), limit: 1000, now: now)
            var events: [(SubscriptionEvent, JSON?)] = []
            for record in records {
                guard let n = Int(record.id), n <= until, let event = SubscriptionEvent(number: n, content: record.content) else { continue }
                var focus: JSON?
                if content == .fullResource {
                    focus = try? await service.vread(event.type, event.id, version: String(event.version)).content
                        .flatMap { try JSONParser.parse(Array($0.readableBytesView)) }
                }
                events.append((event, focus))
            }
            return .resource(NotificationBundle.make(base: request.baseURL, subscription: definition, status: definition.status,
                                                     kind: .queryEvent, eventsSinceStart: count, events: events, content: content, now: now))
        })

    static let subscriptionWebSocketToken = RegisteredOperation(
        name: "get-ws-binding-token", resourceTypes: ["Subscription"], levels: [.type, .instance], allowsGet: true, affectsState: false,
        title: "Get a websocket binding token",
        documentation: "A token, valid once for five minutes, that binds a websocket (sent as 'bind-with-token <token>' on websocket-url) "
            + "to the caller's websocket subscriptions: this one at the instance level, those named by id at the type level.",
        parameters: [P("id", .in, max: "*", type: "id", "At the type level, the subscriptions to bind (at least one)"),
                     P("token", .out, min: 1, type: "string", "The binding token"),
                     P("expiration", .out, min: 1, type: "dateTime", "Until when the token may be used"),
                     P("subscription", .out, max: "*", type: "string", "The subscriptions the token binds"),
                     P("websocket-url", .out, min: 1, type: "url", "Where to open the websocket")],
        definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token",
        access: { _ in (.read, "Subscription") },
        handler: { service, request in
            var ids: [String] = []
            if let id = request.id {
                ids = [id]
            } else {
                ids = request.parameters.filter { $0.0 == "id" }.map(\.1)
                for p in request.body?["parameter"]?.arrayValue ?? [] where p["name"]?.stringValue == "id" {
                    if let v = p["valueId"]?.stringValue ?? p["valueString"]?.stringValue { ids.append(v) }
                }
                guard !ids.isEmpty else {
                    throw FHIRError(.invalid, code: "required", "Name the subscriptions to bind (id), or ask Subscription/[id]/$get-ws-binding-token", at: "id")
                }
                guard ids.count <= SubscriptionSockets.maxBindings else {
                    throw FHIRError(.invalid, code: "too-costly", "At most \(SubscriptionSockets.maxBindings) subscriptions per token", at: "id")
                }
            }
            for id in ids {
                // A socket gets full-resource content read as the owner: the owner's (or an administrator's) alone.
                let definition = try await ownSubscription(service, id, operatorsToo: false)
                guard definition.channel == .websocket else {
                    throw FHIRError(.invalid, code: "not-supported", "Subscription/\(id) has a \(definition.channel.rawValue) channel, not websocket", at: "id")
                }
            }
            let now = SubscriptionDelivery.nowMicros
            let (token, expires) = try await SubscriptionSockets.issue(ids, store: service.store, now: now)
            var parameters: [JSON] = [
                NotificationBundle.parameter("token", "valueString", .string(token)),
                NotificationBundle.parameter("expiration", "valueDateTime", .string(FHIRDateTime.formatInstant(micros: expires))),
            ]
            for id in ids { parameters.append(NotificationBundle.parameter("subscription", "valueString", .string(request.baseURL + "/Subscription/" + id))) }
            parameters.append(NotificationBundle.parameter("websocket-url", "valueUrl", .string(SubscriptionSockets.url(base: request.baseURL))))
            return .resource(.object(JSONObject([("resourceType", .string("Parameters")), ("parameter", .array(parameters))])))
        })
}
