import Access
import ArgumentParser
import Foundation
import HTTPAPI
import Server
import BulkImport
import Hummingbird
import Logging
import ServiceLifecycle
import Platform
import Identity
import Store
import StorePostgres
import FHIRModel

@main
struct Huitong: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "huitong",
        abstract: "Huitong (汇通): a regional population health information platform.",
        subcommands: [Serve.self, Import.self, Reindex.self, Migrate.self, Export.self, Empi.self, TerminologyCommand.self, SharingCommand.self, Client.self, User.self, Audit.self, Bench.self])
}

/// The sensitive categories records are labelled with: the same for `serve`, `import` and
/// `reindex`, or a record would be labelled one way when served and another when loaded.
struct LabelOptions: ParsableArguments {
    @Option(help: "Sensitive categories (JSON: {\"categories\":[{\"label\":\"PSY\",\"name\":...,\"codes\":[{\"system\":...,\"prefix\":\"F\"}]}]}); default: built-in mental health, HIV, STD, reproductive health by ICD-10. Env: HUITONG_SENSITIVE_CATEGORIES")
    var sensitiveCategories: String? = ProcessInfo.processInfo.environment["HUITONG_SENSITIVE_CATEGORIES"].flatMap { $0.isEmpty ? nil : $0 }

    func categories() throws -> SensitiveCategories {
        try sensitiveCategories.map { try SensitiveCategories.load(path: $0) } ?? .defaults
    }
}

/// Options every command that opens the store shares.
struct StoreOptions: ParsableArguments {
    @Option(help: "Folder holding the database (created if missing). Env: HUITONG_DATA")
    var data: String = ProcessInfo.processInfo.environment["HUITONG_DATA"] ?? "./huitong-data"

    @Option(help: "normal: survive a process crash (WAL, synchronous=NORMAL); full: fsync every commit. Env: HUITONG_DURABILITY")
    var durability: String = ProcessInfo.processInfo.environment["HUITONG_DURABILITY"] ?? "normal"

    @Option(help: "PostgreSQL instead of the embedded store: postgres://user:password@host:port/database. Env: HUITONG_DATABASE_URL")
    var database: String? = ProcessInfo.processInfo.environment["HUITONG_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "A PostgreSQL read replica for searches, history and $everything (with --database). Env: HUITONG_READ_DATABASE_URL")
    var readDatabase: String? = ProcessInfo.processInfo.environment["HUITONG_READ_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "Keyring encrypting resident ID and phone numbers at rest: lines '<key id> <base64 of 32 random bytes>'; the last key encrypts, every key decrypts, the first keys the blind index. Made if missing (keep it apart from the data and back it up). Default: <data>/keys/identifier-keys. Env: HUITONG_IDENTIFIER_KEYS (a path) or HUITONG_IDENTIFIER_KEYRING (the keyring itself)")
    var identifierKeys: String? = ProcessInfo.processInfo.environment["HUITONG_IDENTIFIER_KEYS"].flatMap { $0.isEmpty ? nil : $0 }

    /// The identifier keyring (made on first use), checked against the store (closed on failure,
    /// so that the command ends with the message).
    func identifierProtection(for store: any ResourceStore, bind: Bool = true) async throws -> IdentifierProtection {
        do {
            return try await loadIdentifierProtection(for: store, bind: bind)
        } catch {
            try? await store.close()
            throw error
        }
    }

    private func loadIdentifierProtection(for store: any ResourceStore, bind: Bool) async throws -> IdentifierProtection {
        let protection: IdentifierProtection
        if identifierKeys == nil, let ring = ProcessInfo.processInfo.environment["HUITONG_IDENTIFIER_KEYRING"], !ring.isEmpty {
            protection = try IdentifierProtection(keyring: ring)
        } else {
            let path = identifierKeys ?? ((data as NSString).appendingPathComponent("keys") as NSString).appendingPathComponent("identifier-keys")
            let fm = FileManager.default
            if !fm.fileExists(atPath: path) {
                try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                       attributes: [.posixPermissions: 0o700])
                let text = "# Huitong identifier keyring: '<key id> <base64 key>'; add a line to rotate (the last encrypts).\n"
                    + IdentifierProtection.newKeyLine(id: "k1") + "\n"
                guard fm.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw ValidationError("Cannot write the identifier keyring \(path)")
                }
            }
            do {
                protection = try IdentifierProtection(keyring: try String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw ValidationError("Identifier keyring \(path): \(error)")
            }
        }
        if bind {
            do { try await protection.bind(to: store) } catch { throw ValidationError("\(error)") }
        }
        return protection
    }

    /// Where the data lives, for log lines (no password).
    var location: String { database.map(PostgresStore.redacted) ?? data }

    /// - Parameter documentDiskReserve: the embedded store's free disk space that streamed documents never take (`serve`).
    func open(logger: Logger, documentDiskReserve: Int = 0) async throws -> any ResourceStore {
        if let database {
            return try await PostgresStore.open(url: database, readURL: readDatabase, logger: logger)
        }
        if readDatabase != nil { throw ValidationError("--read-database needs --database (a PostgreSQL primary)") }
        return try await openEmbedded(logger: logger, documentDiskReserve: documentDiskReserve)
    }

    func openEmbedded(logger: Logger, documentDiskReserve: Int = 0) async throws -> SQLiteStore {
        guard let mode = SQLiteStore.Durability(rawValue: durability) else {
            throw ValidationError("--durability must be 'normal' or 'full'")
        }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try DataLock.acquire(folder: data)
        return try await SQLiteStore.open(path: (data as NSString).appendingPathComponent("huitong.sqlite"), durability: mode,
                                          documentDiskReserve: documentDiskReserve, logger: logger)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the platform's HTTP server (FHIR R4 at /fhir).")

    @Option(help: "Address to listen on (default 0.0.0.0; with --dev 127.0.0.1). Env: HUITONG_HOST")
    var host: String? = ProcessInfo.processInfo.environment["HUITONG_HOST"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "Port to listen on. Env: HUITONG_PORT")
    var port: Int = Int(ProcessInfo.processInfo.environment["HUITONG_PORT"] ?? "") ?? 8080

    @Option(help: "Largest accepted request body in bytes.")
    var maxBodyBytes: Int = 20 * 1024 * 1024

    @Option(help: "Largest document a Binary sent in its own content type may hold, in bytes; one over 4 MiB is streamed to the store, sealed, not held in memory (default 2 GiB - 1, R4's Attachment.size).")
    var maxDocumentBytes: Int = Int(Int32.max)

    @Option(help: "A Binary sent in its own content type larger than this many bytes is streamed to the store (sealed segment by segment); smaller ones are kept in their JSON.")
    var documentStreamThreshold: Int = 4 * 1024 * 1024

    @Option(help: "Embedded store: free disk space, in bytes, that streamed documents do not take (an upload that would is refused with 507, so the database keeps room to commit; 0: no reserve). Env: HUITONG_DOCUMENT_DISK_RESERVE")
    var documentDiskReserve: Int = ProcessInfo.processInfo.environment["HUITONG_DOCUMENT_DISK_RESERVE"].flatMap { Int($0) } ?? 1 << 30

    @Option(help: "A streamed document that no stored Binary names (its upload cut short, or its write failed) is removed once nothing was written to it for this many seconds (at least 600; checked at start and hourly).")
    var documentStreamSweepAfter: Int = 3600

    @Flag(help: "Development mode, for a first look and local tests: a request without a token acts as a development administrator (still audited). Loopback only.")
    var dev = false

    @Flag(help: "With --dev only, for a benchmark's baseline: record no audit events.")
    var noAudit = false

    @Option(help: "Folder of the ES256 keys that sign access tokens (token-<kid>.pem; one is made if there is none; share it between nodes). Default: <data>/keys. Env: HUITONG_TOKEN_KEYS")
    var tokenKeys: String? = ProcessInfo.processInfo.environment["HUITONG_TOKEN_KEYS"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "The externally visible base URL (https://hie.example.gov.cn), for token audiences, SMART discovery and the URLs in responses; required without --dev. Env: HUITONG_PUBLIC_URL")
    var publicURL: String? = ProcessInfo.processInfo.environment["HUITONG_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 }

    @OptionGroup var labelOptions: LabelOptions

    @Option(help: "HTTPS: the server's certificate chain (PEM), with --tls-key. Env: HUITONG_TLS_CERT")
    var tlsCert: String? = ProcessInfo.processInfo.environment["HUITONG_TLS_CERT"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "HTTPS: the certificate's private key (PEM). Env: HUITONG_TLS_KEY")
    var tlsKey: String? = ProcessInfo.processInfo.environment["HUITONG_TLS_KEY"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(help: "Requests a second to /auth/* per client address (0: unlimited).")
    var authRateLimit: Double = 5

    @Option(help: "Requests a second to /fhir per client or user (0: unlimited).")
    var clientRateLimit: Double = 0

    @Option(help: "Seconds a request's head may take to arrive from its first byte (slow senders are cut off).")
    var headerTimeout: Double = 10

    @Option(help: "Seconds a connection may stay open with no request in progress.")
    var idleTimeout: Double = 60

    @Option(help: "HL7 v2 over MLLP on this port (e.g. 2575; off by default). Senders are registered with `huitong client create --hl7-sender`. Env: HUITONG_MLLP_PORT")
    var mllpPort: Int? = Int(ProcessInfo.processInfo.environment["HUITONG_MLLP_PORT"] ?? "")

    @Option(help: "Largest HL7 v2 message accepted over MLLP, in bytes (larger ones get AR).")
    var mllpMaxBytes: Int = 8 * 1024 * 1024

    @Flag(help: "MLLP over TLS with the --tls-cert/--tls-key certificate.")
    var mllpTLS = false

    @Option(help: "Seconds between runs of the reminder rules (提醒服务: e.g. the appointment reminder 24 h ahead); 0 turns reminders off.")
    var reminderInterval: Double = 60

    @Option(help: "Append every committed change (type, id, version; no content) to DIR/changes-YYYY-MM-DD.ndjson for systems downstream; one node at a time exports, from where the last one stopped. Env: HUITONG_EXPORT_CHANGES")
    var exportChanges: String? = ProcessInfo.processInfo.environment["HUITONG_EXPORT_CHANGES"].flatMap { $0.isEmpty ? nil : $0 }

    @OptionGroup var cardOptions: CardOptions

    @OptionGroup var matchingOptions: MatchingOptions

    @OptionGroup var storeOptions: StoreOptions

    static let loopback: Set<String> = ["127.0.0.1", "::1", "localhost"]

    func validate() throws {
        if dev, let host, !Self.loopback.contains(host) {
            throw ValidationError("--dev serves only on loopback (127.0.0.1, ::1, localhost), not on \(host): without a token every request acts as an administrator")
        }
        if noAudit && !dev { throw ValidationError("--no-audit is for benchmark baselines and needs --dev") }
        if documentStreamSweepAfter < 600 {
            throw ValidationError("--document-stream-sweep-after is at least 600 seconds: an upload on a slow link must not be taken for abandoned")
        }
        if !(headerTimeout > 0 && idleTimeout > 0) { throw ValidationError("--header-timeout and --idle-timeout are positive numbers of seconds") }
        // Token audiences and discovery URLs must not follow a client's Host header (ADR 009).
        if !dev {
            guard let publicURL else {
                throw ValidationError("serve needs --public-url (or HUITONG_PUBLIC_URL): the URL clients reach this server at, e.g. https://hie.example.gov.cn; "
                                      + "token audiences and discovery use it, never a request's Host header")
            }
            guard let url = URL(string: publicURL), url.scheme == "https" || url.scheme == "http", url.host != nil, url.query == nil else {
                throw ValidationError("--public-url must be an http(s) URL without a query, e.g. https://hie.example.gov.cn, not '\(publicURL)'")
            }
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if mllpTLS && (tlsCert == nil || mllpPort == nil) { throw ValidationError("--mllp-tls needs --mllp-port, --tls-cert and --tls-key") }
    }

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .info
        if dev { logger[metadataKey: "mode"] = "development" }
        let host = self.host ?? (dev ? "127.0.0.1" : "0.0.0.0")
        let store = try await storeOptions.open(logger: logger, documentDiskReserve: max(0, documentDiskReserve))
        do {
            let server = PlatformServer(store: store, configuration: try await configuration(store: store, host: host))
            try await server.run(logger: logger, dataLocation: storeOptions.location)
        } catch {
            try? await store.close()  // the message, not an assertion about an open connection
            throw error
        }
        try await store.close()
        logger.info("Huitong stopped: every acknowledged write is in the store")
    }
}

extension Serve {
    /// The platform's configuration from the flags (and the keys and first administrator they lead to).
    func configuration(store: any ResourceStore, host: String) async throws -> PlatformConfiguration {
        let identifiers = try await storeOptions.identifierProtection(for: store)
        let keys = try TokenKeyFolder(path: tokenKeys ?? (storeOptions.data as NSString).appendingPathComponent("keys")).load()
        let tokens = try await TokenAuthority(keys: keys)
        if let admin = try await UserDirectory.ensureAdministrator(in: store) {
            FileHandle.standardOutput.write(Data("First start: an administrator account was created (written once, here on standard output).\n".utf8))
            UserCreate.show(admin)
        }
        var configuration = PlatformConfiguration(
            host: host, port: port, maxBodyBytes: maxBodyBytes, matching: try matchingOptions.rules(),
            tokens: tokens, development: dev, publicURL: publicURL)
        configuration.audit = !noAudit
        configuration.maxDocumentBytes = maxDocumentBytes
        configuration.documentStreamThreshold = documentStreamThreshold
        configuration.documentStreamSweepAfter = documentStreamSweepAfter
        configuration.identifiers = identifiers
        configuration.cards = try cardOptions.keyring(data: storeOptions.data, keyFolder: tokenKeys)
        configuration.cardSettings = try cardOptions.settings()
        configuration.sensitive = try labelOptions.categories()
        if let tlsCert, let tlsKey { configuration.tls = (tlsCert, tlsKey) }
        configuration.headerTimeout = .nanoseconds(Int64(headerTimeout * 1e9))
        configuration.idleTimeout = .nanoseconds(Int64(idleTimeout * 1e9))
        configuration.rateLimits = RateLimits(authPerAddress: authRateLimit > 0 ? authRateLimit : nil,
                                              perClient: clientRateLimit > 0 ? clientRateLimit : nil)
        if let exportChanges { configuration.changeConsumers.append(try ChangeFileExport(folder: exportChanges).consumer) }
        configuration.reminderInterval = reminderInterval > 0 ? .nanoseconds(Int64(reminderInterval * 1e9)) : nil
        configuration.mllp = mllpPort.map { PlatformConfiguration.MLLPSettings(port: $0, maxMessageBytes: mllpMaxBytes, tls: mllpTLS) }
        return configuration
    }
}

/// The folder of token signing keys: every `token-<kid>.pem` verifies, the newest signs.
/// An empty folder gets a new key (readable by the owner only).
struct TokenKeyFolder {
    let path: String

    func load() throws -> [SigningKey] {
        let fm = FileManager.default
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var keys: [SigningKey] = []
        for name in try fm.contentsOfDirectory(atPath: path).sorted() where name.hasPrefix("token-") && name.hasSuffix(".pem") {
            let pem = try String(contentsOfFile: (path as NSString).appendingPathComponent(name), encoding: .utf8)
            keys.append(try SigningKey(kid: String(name.dropFirst(6).dropLast(4)), pem: pem))
        }
        if keys.isEmpty { keys.append(try rotate()) }
        return keys
    }

    /// Adds a new key, which signs from the next start on; older keys keep verifying.
    @discardableResult
    func rotate() throws -> SigningKey {
        let (kid, pem) = try SigningKey.generate()
        let file = (path as NSString).appendingPathComponent("token-\(kid).pem")
        guard FileManager.default.createFile(atPath: file, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ValidationError("Cannot write the token signing key \(file)")
        }
        return try SigningKey(kid: kid, pem: pem)
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load FHIR Bundles (transaction, batch, collection) and NDJSON files or folders through the ingest pipeline.")

    @Argument(help: "Files or folders (.json, .ndjson).")
    var paths: [String]

    @Option(help: "Files imported concurrently.")
    var parallel: Int = 4

    @OptionGroup var matchingOptions: MatchingOptions

    @OptionGroup var labelOptions: LabelOptions

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        let files = BulkImporter.files(in: paths)
        guard !files.isEmpty else { throw ValidationError("No .json or .ndjson files found in \(paths.joined(separator: ", "))") }
        let store = try await storeOptions.open(logger: logger)
        // The platform as serve builds it (the same pipeline stages, facility code maps included).
        var configuration = PlatformConfiguration(matching: try matchingOptions.rules())
        configuration.sensitive = try labelOptions.categories()
        configuration.identifiers = try await storeOptions.identifierProtection(for: store)
        let importer = BulkImporter(service: PlatformServer(store: store, configuration: configuration).service.acting(as: .platform))
        let progress = ImportProgress(totalFiles: files.count)
        var failures: [BulkImporter.FileResult] = []
        await withTaskGroup(of: BulkImporter.FileResult.self) { group in
            var next = 0
            for _ in 0..<min(max(parallel, 1), files.count) {
                let f = files[next]; next += 1
                group.addTask { await importer.importFile(f) }
            }
            for await result in group {
                progress.record(result)
                if result.error != nil { failures.append(result) }
                if next < files.count {
                    let f = files[next]; next += 1
                    group.addTask { await importer.importFile(f) }
                }
            }
        }
        progress.finish()
        try await store.analyze()
        try await store.close()
        if !failures.isEmpty {
            var err = FileHandleOutputStream.standardError
            print("\(failures.count) file(s) failed:", to: &err)
            for f in failures { print("  \(f.path): \(f.error ?? "")", to: &err) }
            throw ExitCode(1)
        }
    }
}

struct Reindex: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild the search index and the access labels from stored resources (after adding search parameters or sensitive categories).")

    @Option(help: "Only resources of this type.")
    var type: String?

    @OptionGroup var labelOptions: LabelOptions

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        if let type, !FHIRSchema.r4.isResourceType(type) { throw ValidationError("Unknown resource type '\(type)'") }
        let store = try await storeOptions.open(logger: logger)
        // Re-blinds with the current keyring: after a change of its first key on purpose, the
        // store is bound to the new one.
        let protection = try await storeOptions.identifierProtection(for: store, bind: false)
        let pipeline = IngestPipeline(sensitive: try labelOptions.categories(), protection: protection)
        let start = Date()
        let done = try await store.reindex(type: type, extract: { pipeline.indexEntries(forStored: $0, type: $1) }) { done, total in
            let elapsed = Date().timeIntervalSince(start)
            let rate = Double(done) / max(elapsed, 0.001)
            let eta = rate > 0 ? Double(total - done) / rate : 0
            ProgressLine.draw("reindexed \(done)/\(total)  \(Int(rate))/s  ETA \(Int(eta)) s")
        }
        ProgressLine.end()
        try await store.analyze()
        if type == nil {
            try await protection.rebind(to: store)
            // A full reindex does what a migration left pending.
            try await store.commitRecords([RecordWrite.delete(kind: PendingReindex.record.kind, id: PendingReindex.record.id)])
        }
        print("Reindexed \(done) resources in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        try await store.close()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring the database schema up to date (serve does it too; run this before rolling out new nodes).")

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .info
        let store = try await storeOptions.open(logger: logger)
        let version = try await store.schemaVersion()
        try await store.close()
        print("Schema of \(storeOptions.location) is at version \(version)")
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the embedded store (--data) into an empty PostgreSQL database, resumably, with progress.")

    @Option(help: "The PostgreSQL database to copy into: postgres://user:password@host:port/database")
    var to: String

    @Option(help: "Folder holding the embedded database. Env: HUITONG_DATA")
    var data: String = ProcessInfo.processInfo.environment["HUITONG_DATA"] ?? "./huitong-data"

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        var options = try StoreOptions.parse(["--data", data])
        options.database = nil
        let source = try await options.openEmbedded(logger: logger)
        let target = try await PostgresStore.open(url: to, logger: logger)
        let start = Date()
        let sourceName = URL(fileURLWithPath: data).standardizedFileURL.path
        do {
            let copied = try await EmbeddedExport.run(from: source, sourceName: sourceName, to: target) { done, total in
                let elapsed = Date().timeIntervalSince(start)
                let rate = Double(done) / max(elapsed, 0.001)
                ProgressLine.draw("exported \(done)/\(total) resources  \(Int(rate))/s  ETA \(rate > 0 ? Int(Double(total - done) / rate) : 0) s")
            }
            ProgressLine.end()
            let before = try await source.resourceCounts()
            let after = try await target.resourceCounts()
            guard before == after else {
                throw ValidationError("Counts differ after the export: embedded \(before), PostgreSQL \(after)")
            }
            print("Exported \(copied) resources (\(before.values.reduce(0, +)) current) to \(PostgresStore.redacted(to))"
                  + " in \(String(format: "%.1f", Date().timeIntervalSince(start))) s; counts per type match")
            let keyring = ((data as NSString).appendingPathComponent("keys") as NSString).appendingPathComponent("identifier-keys")
            print("Serve it with the same identifier keyring: --identifier-keys \(keyring) (or wherever --identifier-keys pointed)")
        } catch {
            try? await source.close()
            try? await target.close()
            throw error
        }
        try await source.close()
        try await target.close()
    }
}

/// How the master patient index matches Patients as they are written.
struct MatchingOptions: ParsableArguments {
    @Option(help: "Master patient index rules (JSON, `huitong empi train` writes one); default: built-in rules. Env: HUITONG_MATCH_RULES")
    var matchRules: String? = ProcessInfo.processInfo.environment["HUITONG_MATCH_RULES"].flatMap { $0.isEmpty ? nil : $0 }

    @Flag(help: "Do not link Patients to master Persons (no master patient index).")
    var noMatching = false

    func rules() throws -> MatchRules? {
        if noMatching { return nil }
        guard let matchRules else { return .defaults }
        do {
            return try MatchRules.load(path: matchRules)
        } catch {
            throw ValidationError("Cannot read the match rules \(matchRules): \(error)")
        }
    }
}
