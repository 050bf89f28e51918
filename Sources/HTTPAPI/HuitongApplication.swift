import FHIRModel
import Hummingbird
import Identity
import Logging
import Platform
import Store

/// Builds the Hummingbird application: FHIR REST under `/fhir`, a status page at `/`,
/// and `/health` / `/ready` for load balancers.
public enum HuitongApplication {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var maxBodyBytes: Int
        /// The master patient index's rules; nil turns matching off.
        public var matching: MatchRules?

        public init(host: String = "0.0.0.0", port: Int = 8080, maxBodyBytes: Int = 20 * 1024 * 1024,
                    matching: MatchRules? = .defaults) {
            self.host = host
            self.port = port
            self.maxBodyBytes = maxBodyBytes
            self.matching = matching
        }
    }

    public static func router(store: any ResourceStore, configuration: Configuration) -> Router<BasicRequestContext> {
        let router = Router()
        let service = FHIRService(store: store, pipeline: IngestPipeline(maxBodyBytes: configuration.maxBodyBytes),
                                  matching: configuration.matching)
        FHIRRoutes(service: service, searches: SearchService(store: store), bundles: BundleProcessor(service: service),
                   maxBodyBytes: configuration.maxBodyBytes)
            .register(on: router)
        router.get("health") { _, _ in "ok" }
        router.get("ready") { _, _ -> Response in
            do {
                _ = try await store.resourceCounts()
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready")))
            } catch {
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "store unavailable: \(error)")))
            }
        }
        router.get("/") { _, _ -> Response in
            let counts = (try? await store.resourceCounts()) ?? [:]
            return StatusPage.render(counts: counts)
        }
        return router
    }

    public static func make(store: any ResourceStore, configuration: Configuration, logger: Logger) -> some ApplicationProtocol {
        Application(
            router: router(store: store, configuration: configuration),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Huitong"),
            logger: logger)
    }
}
