// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Huitong",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "huitong", targets: ["huitong"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        .target(
            name: "FHIRModel",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Store",
            dependencies: [
                "FHIRModel",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GMCrypto",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HealthCard",
            dependencies: ["FHIRModel", "GMCrypto", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HL7v2",
            dependencies: [
                "FHIRModel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "StorePostgres",
            dependencies: [
                "FHIRModel", "Store",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Identity",
            dependencies: ["FHIRModel", "Store", "Access", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Access",
            dependencies: [
                "FHIRModel", "Store",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "StoreTestSupport",
            dependencies: ["Store", "StorePostgres"],
            swiftSettings: swiftSettings
        ),
        // The interactions core (ADR 021): the FHIR service, the write pipeline, search, the
        // operation registry, the change-feed consumer API. Domain targets build on it, never on
        // HTTP or on each other's internals.
        .target(
            name: "Platform",
            dependencies: [
                "FHIRModel", "Store", "Identity", "Access",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Channels and domain services on the core.
        .target(
            name: "Gateway",
            dependencies: [
                "Platform", "FHIRModel", "Store", "Access", "HL7v2",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Cards",
            dependencies: ["Platform", "FHIRModel", "Store", "Access", "Identity", "HealthCard", "GMCrypto"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Terminology",
            dependencies: ["Platform", "FHIRModel", "Store", "Access", "Identity", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Notifications",
            dependencies: ["Platform", "FHIRModel", "Store", "Access", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Sharing",
            dependencies: ["Platform", "FHIRModel", "Store", "Access", "Identity", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BulkImport",
            dependencies: ["Platform", "FHIRModel", "Store", "Access"],
            swiftSettings: swiftSettings
        ),
        // HTTP onto service calls and back; no wiring.
        .target(
            name: "HTTPAPI",
            dependencies: [
                "FHIRModel", "Store", "Access", "Platform", "HealthCard", "Cards", "Gateway",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Wiring and configuration in one place: builds the platform from a configuration and runs
        // it as one service group (HTTP, MLLP, sweeps, change-feed dispatcher).
        .target(
            name: "Server",
            dependencies: [
                "Platform", "Gateway", "Cards", "Terminology", "Notifications", "Sharing", "HTTPAPI", "FHIRModel", "Store", "Access", "Identity", "HL7v2", "HealthCard",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "huitong",
            dependencies: [
                "Server", "HTTPAPI", "BulkImport", "Cards", "Terminology", "Sharing", "Platform", "Store", "StorePostgres", "FHIRModel", "Access", "HL7v2", "GMCrypto", "HealthCard", "Identity",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FHIRModelTests", dependencies: ["FHIRModel"], swiftSettings: swiftSettings),
        .testTarget(name: "GMCryptoTests", dependencies: ["GMCrypto", "HealthCard"], swiftSettings: swiftSettings),
        .testTarget(name: "HealthCardTests", dependencies: ["HealthCard", "GMCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "HL7v2Tests", dependencies: ["HL7v2", "FHIRModel", .product(name: "NIOCore", package: "swift-nio"),
                                                 .product(name: "NIOPosix", package: "swift-nio")], swiftSettings: swiftSettings),
        .testTarget(name: "AccessTests", dependencies: ["Access", "Store", "StoreTestSupport", "FHIRModel",
                                                     .product(name: "JWTKit", package: "jwt-kit"),
                                                     .product(name: "Crypto", package: "swift-crypto")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "IdentityTests", dependencies: ["Identity", "FHIRModel"], swiftSettings: swiftSettings),
        // Domain tests of the platform core, without HTTP.
        .testTarget(name: "PlatformTests", dependencies: ["Platform", "Gateway", "Cards", "BulkImport", "Terminology", "Store", "StoreTestSupport", "Access", "FHIRModel", "HL7v2", "HealthCard",
                                                   .product(name: "Logging", package: "swift-log")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "StoreTests", dependencies: ["Store", "StorePostgres", "StoreTestSupport", "FHIRModel", "Platform", "Access",
                                                .product(name: "PostgresNIO", package: "postgres-nio"),
                                                .product(name: "Logging", package: "swift-log"),
                                                .product(name: "Crypto", package: "swift-crypto")],
                    swiftSettings: swiftSettings),
        .testTarget(
            name: "HTTPAPITests",
            dependencies: [
                "HTTPAPI", "Server", "Platform", "Gateway", "Cards", "Terminology", "Sharing", "Store", "StorePostgres", "StoreTestSupport", "FHIRModel", "Access", "HL7v2", "HealthCard", "GMCrypto",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
