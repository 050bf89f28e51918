import Access
import Cards
import HTTPAPI
import Identity
import NIOCore
import Notifications
import Platform
import Prometheus

/// Everything a running platform is configured with, in one place (ADR 021): `huitong serve`
/// fills it from its flags, the tests from their arguments, and `PlatformServer` builds the
/// services, channels and background work from it.
public struct PlatformConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var maxBodyBytes: Int
    /// The master patient index's rules; nil turns matching off.
    public var matching: MatchRules?
    /// Signs and verifies access tokens; nil: no tokens are issued (only `development` works).
    public var tokens: TokenAuthority?
    /// `huitong serve --dev`: a request without a token acts as a development administrator.
    public var development: Bool
    /// The externally visible base URL, for token audiences and discovery (nil: the Host header).
    public var publicURL: String?
    /// Off only for a benchmark's baseline (`serve --dev --no-audit`).
    public var audit = true
    /// Sensitive categories (labelled on write, hidden from other facilities without an opt-in).
    public var sensitive = SensitiveCategories.defaults
    /// HTTPS: PEM certificate chain and private key files (nil: plain HTTP).
    public var tls: (certificate: String, key: String)?
    public var rateLimits = RateLimits()
    /// Encrypts resident ID and phone numbers at rest (nil: stored in clear).
    public var identifiers: IdentifierProtection?
    /// Exported at `/metrics` (Prometheus text format).
    public var metrics = PrometheusCollectorRegistry()
    /// E-health card keys (nil: no `/card` routes).
    public var cards: CardKeyring?
    public var cardSettings = CardSettings()
    /// How long a request's head may take to arrive, and an idle connection may stay open.
    public var headerTimeout: TimeAmount = .seconds(10)
    /// A Binary sent in its own type larger than this is kept as a sealed stream (ADR 029).
    public var documentStreamThreshold = 4 * 1024 * 1024
    /// The largest document a Binary sent in its own type may hold.
    public var maxDocumentBytes = Int(Int32.max)
    /// Seconds without a write after which a stream no Binary names is removed (`DocumentStreamSweep`).
    public var documentStreamSweepAfter = 3600
    public var idleTimeout: TimeAmount = .seconds(60)
    /// The FHIR operations offered: the platform's, then any a domain module registers (ADR 019).
    public var operations = OperationRegistry.all
    /// The HL7 v2 listener (nil: none).
    public var mllp: MLLPSettings?
    /// The change feed's consumers (ADR 020): the domain modules register theirs here.
    public var changeConsumers: [ChangeConsumer] = []
    /// Retries, lease and concurrency of subscription delivery (ADR 023).
    public var subscriptionDelivery = SubscriptionDelivery.Settings()
    /// How often the reminder rules run (nil: no reminders).
    public var reminderInterval: Duration? = .seconds(60)

    public struct MLLPSettings: Sendable {
        public var port: Int
        /// Larger messages are answered AR.
        public var maxMessageBytes: Int
        /// MLLP over TLS with the HTTPS certificate (`tls`).
        public var tls: Bool

        public init(port: Int, maxMessageBytes: Int = 8 * 1024 * 1024, tls: Bool = false) {
            self.port = port
            self.maxMessageBytes = maxMessageBytes
            self.tls = tls
        }
    }

    public init(host: String = "127.0.0.1", port: Int = 8080, maxBodyBytes: Int = 20 * 1024 * 1024,
                matching: MatchRules? = .defaults, tokens: TokenAuthority? = nil, development: Bool = false,
                publicURL: String? = nil) {
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.matching = matching
        self.tokens = tokens
        self.development = development
        self.publicURL = publicURL
    }

    /// The part the HTTP listener reads.
    var http: HuitongApplication.Settings {
        var settings = HuitongApplication.Settings(host: host, port: port, maxBodyBytes: maxBodyBytes,
                                                   development: development, publicURL: publicURL)
        settings.tls = tls
        settings.rateLimits = rateLimits
        settings.headerTimeout = headerTimeout
        settings.documentStreamThreshold = documentStreamThreshold
        settings.maxDocumentBytes = maxDocumentBytes
        settings.idleTimeout = idleTimeout
        return settings
    }
}
