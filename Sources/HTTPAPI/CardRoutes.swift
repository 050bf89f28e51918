import FHIRModel
import Foundation
import HTTPTypes
import HealthCard
import Hummingbird
import Platform
import Cards

/// The e-health card API under `/card` (`HealthCardService`): authenticated, rate-limited and
/// answered with OperationOutcomes like `/fhir`, with JSON bodies of its own.
struct CardRoutes: Sendable {
    let routes: FHIRRoutes
    let keys: CardKeyring
    let settings: CardSettings
    let uses: HealthCardService.CodeUses

    init(routes: FHIRRoutes, keys: CardKeyring, settings: CardSettings) {
        self.routes = routes
        self.keys = keys
        self.settings = settings
        uses = HealthCardService.CodeUses(now: settings.clock())
    }

    func cards(_ r: FHIRRoutes) -> HealthCardService {
        HealthCardService(service: r.service, keys: keys, settings: settings, uses: uses)
    }

    func register(on router: Router<HuitongRequestContext>) {
        let card = router.group("card")
        // The public keys of offline codes, for verifiers without a network (no patient data).
        card.get("keys") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/jwk-set+json", .cacheControl: "max-age=3600"],
                     body: .init(byteBuffer: ByteBuffer(string: keys.offline.jwks)))
        }
        card.post("issue") { request, context in
            try await routes.handle(request, context) { r, _ in
                let (json, created) = try await cards(r).issue(try await r.readResource(request))
                return Self.json(json, status: created ? .created : .ok)
            }
        }
        card.post("verify") { request, context in
            try await routes.handle(request, context) { r, _ in
                Self.json(try await cards(r).verify(try await r.readResource(request)))
            }
        }
        card.get("{id}") { request, context in
            try await routes.handle(request, context) { r, _ in
                Self.json(try await cards(r).read(try context.parameters.require("id")))
            }
        }
        card.get("{id}/qr") { request, context in
            try await routes.handle(request, context) { r, _ in
                try await qr(r, try context.parameters.require("id"), request)
            }
        }
        card.post("{id}/{action}") { request, context in
            try await routes.handle(request, context) { r, _ in
                // The body (a reason) is optional; when there is one it is JSON like every other.
                let body = try await r.readResource(request, emptyAs: .object(JSONObject()))
                return Self.json(try await cards(r).change(try context.parameters.require("id"), action: try context.parameters.require("action"),
                                                           reason: body["reason"]?.stringValue))
            }
        }
    }

    /// `GET /card/{id}/qr?kind=dynamic|static|offline&format=text|png|svg`.
    func qr(_ r: FHIRRoutes, _ id: String, _ request: Request) async throws -> Response {
        let params = request.uri.queryParameters
        let kindText = params["kind"].map(String.init) ?? "dynamic"
        guard let kind = HealthCardService.CodeKind(rawValue: kindText) else {
            throw FHIRError(.invalid, code: "code-invalid", "kind must be dynamic, static or offline", at: "kind")
        }
        let format = params["format"].map(String.init) ?? "text"
        guard ["text", "png", "svg"].contains(format) else {
            throw FHIRError(.invalid, code: "code-invalid", "format must be text, png or svg", at: "format")
        }
        let (text, expires) = try await cards(r).code(id, kind: kind)
        var headers: HTTPFields = [.cacheControl: "no-store"]
        if let expires { headers[.expires] = FHIRDateTime.formatHTTPDate(micros: Int64(expires) * 1_000_000) }
        if format == "text" {
            var o = JSONObject([("text", .string(text)), ("kind", .string(kind.rawValue))])
            if let expires { o["expires"] = .string(FHIRDateTime.formatInstant(micros: Int64(expires) * 1_000_000)) }
            return Self.json(.object(o), headers: headers)
        }
        // An offline code is long (a version-10 symbol): level L keeps it in range.
        let symbol = try QRCode(text, level: kind == .offline ? .low : .medium)
        if format == "png" {
            headers[.contentType] = "image/png"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: symbol.png())))
        }
        headers[.contentType] = "image/svg+xml"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: symbol.svg())))
    }

    static func json(_ value: JSON, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value))))
    }
}
