import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store
#if canImport(Glibc)
import Glibc
#endif

/// What the platform checks and sets on a client's write of a `Subscription` (the write
/// pipeline's enrich stage, ADR 023): a channel it serves, criteria it can parse on a type the
/// writer may read, an endpoint the writer may deliver to (no loopback or private address unless
/// the client's registration lists it: SSRF), the writer as the owner on whose behalf every
/// notification is decided (a platform record beside the resource), and the status: a client asks (`requested`) or stops (`off`); the
/// platform makes it `active` after the handshake, or `error`.
public struct SubscriptionWrites: WriteEnricher {
    let store: any ResourceStore
    let searches: SearchService

    public init(store: any ResourceStore, searches: SearchService) {
        self.store = store
        self.searches = searches.acting(as: .platform)
    }

    /// A Subscription's stored version only (topics are the platform's own).
    public func reads(preparing type: String) -> Set<String>? { [] }

    public func enrich(_ resource: JSONObject, type: String, facility: String?, principal: Principal) async throws -> JSONObject {
        guard type == "Subscription" else { return resource }
        var o = resource
        let channelType = o["channel"]?["type"]?.stringValue ?? ""
        guard SubscriptionDefinition.Channel(rawValue: channelType) != nil else {
            throw FHIRError(.invalid, code: "not-supported", "The platform delivers by rest-hook or websocket, not '\(channelType)'",
                            at: "Subscription.channel.type")
        }
        let criteria = o["criteria"]?.stringValue ?? ""
        // What a reader who may not see it was shown (IdentifierPresenter.subscriptionRedacted) is
        // not a value: sent back, it would replace the real key or search.
        let masked = "******"
        let headers = (o["channel"]?["header"]?.arrayValue ?? []).compactMap(\.stringValue)
        if criteria.contains("=" + masked) || headers.contains(where: { $0 == masked || $0.hasSuffix(": " + masked) })
            || o["channel"]?["endpoint"]?.stringValue?.contains(masked) == true {
            throw FHIRError(.invalid, code: "value", "The Subscription holds masked values (\(masked)): send its real criteria, headers and endpoint",
                            at: "Subscription")
        }
        if SubscriptionDefinition.isTopic(criteria) {
            try checkTopic(criteria, o, principal)
        } else {
            let (criteriaType, query) = SubscriptionDefinition.split(criteria)
            guard FHIRSchema.r4.isResourceType(criteriaType) else {
                throw FHIRError(.invalid, code: "value", "The criteria must be a search URL such as 'Observation?patient=123', or a topic's URL, not '\(criteria)'",
                                at: "Subscription.criteria")
            }
            try checkSearch(criteriaType, query, at: "Subscription.criteria")
            try checkMaySearch(criteriaType, principal)
        }
        if channelType == SubscriptionDefinition.Channel.restHook.rawValue {
            let endpoint = o["channel"]?["endpoint"]?.stringValue ?? ""
            try await checkEndpoint(endpoint, principal)
        }
        let status = o["status"]?.stringValue ?? "requested"
        if status != "off" {
            // A client asks; the handshake makes it active. An active subscription whose client
            // changes something else (its reason, headers, end) stays active with the same endpoint:
            // a new handshake would leave the changes in between unnumbered.
            // A websocket subscription has no endpoint to shake hands with: it is active at once
            // (each socket that binds gets its handshake).
            let websocket = channelType == SubscriptionDefinition.Channel.websocket.rawValue
            let active = try await stillActive(o)
            o["status"] = .string(websocket || active ? "active" : "requested")
        }
        o["error"] = nil
        return o
    }

    func checkSearch(_ type: String, _ query: String, at location: String) throws {
        do {
            _ = try searches.parse(type: type, query: query, strict: true)
        } catch {
            throw FHIRError(.invalid, code: "value", "The criteria cannot be searched: \(error.issues.first?.diagnostics ?? "\(error)")", at: location)
        }
    }

    func checkMaySearch(_ type: String, _ principal: Principal) throws {
        do {
            try AccessPolicy().authorize(principal, .search, type)
        } catch {
            throw FHIRError(.forbidden, code: "forbidden", "A subscription is decided on its owner's behalf, who may not search \(type): \(error.reason)",
                            at: "Subscription.criteria")
        }
    }

    /// A topic the platform publishes, and filters on its resources by the parameters it offers
    /// (`canFilterBy`), one search per resource type.
    func checkTopic(_ url: String, _ o: JSONObject, _ principal: Principal) throws {
        guard let topic = SubscriptionTopic.named(url) else {
            throw FHIRError(.invalid, code: "not-supported", "'\(url)' is not a topic of this platform (see the README's list, or Basic?code=SubscriptionTopic as an administrator)",
                            at: "Subscription.criteria")
        }
        for type in topic.types.sorted() { try checkMaySearch(type, principal) }
        var seen: Set<String> = []
        for (i, filter) in SubscriptionDefinition.filterCriteria(o).enumerated() {
            let at = "Subscription._criteria.extension[\(i)]"
            let (type, query) = SubscriptionDefinition.split(filter)
            guard topic.types.contains(type) else {
                throw FHIRError(.invalid, code: "value", "The topic \(topic.name) is about \(topic.types.sorted().joined(separator: ", ")), not '\(type)'", at: at)
            }
            guard seen.insert(type).inserted else {
                throw FHIRError(.invalid, code: "value", "One filter per resource type: join the parameters of \(type) with '&'", at: at)
            }
            let offered = Set(topic.filters.filter { $0.type == type }.map(\.parameter))
            for pair in query.split(separator: "&") {
                let name = String(pair.split(separator: "=", maxSplits: 1).first ?? "").split(separator: ":").first.map(String.init) ?? ""
                guard offered.contains(name) else {
                    throw FHIRError(.invalid, code: "value", "The topic \(topic.name) can be filtered on \(type) by \(offered.sorted().joined(separator: ", ")), not '\(name)'", at: at)
                }
            }
            try checkSearch(type, query, at: at)
        }
    }

    func stillActive(_ o: JSONObject) async throws -> Bool {
        guard let id = o["id"]?.stringValue, let stored = try await store.read(ResourceKey("Subscription", id)), !stored.deleted,
              let content = stored.content, case .object(let old) = try JSONParser.parse(Array(content.readableBytesView)) else { return false }
        return old["status"]?.stringValue == "active" && old["channel"]?["type"] == o["channel"]?["type"]
            && old["channel"]?["endpoint"] == o["channel"]?["endpoint"] && old["criteria"] == o["criteria"] && old["_criteria"] == o["_criteria"]
    }

    /// The writer becomes the owner: a platform record committed with the write (not in the
    /// resource, which stays as the client sent it).
    public func records(for write: PreparedWrite, principal: Principal) -> [RecordWrite] {
        guard write.key.type == "Subscription" else { return [] }
        if write.action == .delete { return [.delete(kind: SubscriptionDefinition.ownerKind, id: write.key.id)] }
        return [RecordWrite(PlatformRecord(kind: SubscriptionDefinition.ownerKind, id: write.key.id,
                                           content: SubscriptionDefinition.Owner(principal).record))]
    }

    /// A rest-hook endpoint the writer may deliver to.
    func checkEndpoint(_ endpoint: String, _ principal: Principal) async throws {
        let at = "Subscription.channel.endpoint"
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty else {
            throw FHIRError(.invalid, code: "value", "A rest-hook endpoint is an http(s) URL, not '\(endpoint)'", at: at)
        }
        switch principal.kind {
        case .development, .platform:
            return
        case .client:
            let registration = try await store.record(kind: ClientRegistration.kind, id: principal.subject, now: Int64(Date().timeIntervalSince1970 * 1_000_000))
                .flatMap { try? JSONDecoder().decode(ClientRegistration.self, from: Data($0.content.utf8)) }
            let allowed = registration?.subscriptionEndpoints ?? []
            guard allowed.contains(where: { endpoint.hasPrefix($0) }) else {
                throw FHIRError(.forbidden, code: "forbidden", "'\(endpoint)' is not among the endpoints registered for client \(principal.subject)"
                                + " (huitong client create --subscription-endpoint)", at: at)
            }
        default:
            if Self.isInternal(host) {
                throw FHIRError(.forbidden, code: "forbidden", "A rest-hook may not deliver to a loopback or private address ('\(host)')", at: at)
            }
        }
    }

    /// Whether `host` is, or resolves to, a loopback, private, link-local or unspecified address.
    static func isInternal(_ host: String) -> Bool {
        let name = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        if name.lowercased() == "localhost" || name.lowercased().hasSuffix(".localhost") { return true }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return true }   // unresolvable: refused
        defer { freeaddrinfo(result) }
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let address = info.pointee.ai_addr {
                if info.pointee.ai_family == AF_INET {
                    let ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
                    let a = ip >> 24, b = (ip >> 16) & 0xff
                    if a == 127 || a == 10 || a == 0 || (a == 172 && (16...31).contains(b)) || (a == 192 && b == 168)
                        || (a == 169 && b == 254) || (a == 100 && (64...127).contains(b)) { return true }
                } else if info.pointee.ai_family == AF_INET6 {
                    let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                        withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
                    }
                    let loopback = bytes.dropLast().allSatisfy { $0 == 0 } && bytes.last == 1
                    let unspecified = bytes.allSatisfy { $0 == 0 }
                    let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
                    if loopback || unspecified || mapped || (bytes[0] & 0xfe) == 0xfc || (bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80) { return true }
                }
            }
            cursor = info.pointee.ai_next
        }
        return false
    }
}
