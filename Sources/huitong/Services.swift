import HL7v2
import Logging
import Platform
import ServiceLifecycle

/// The MLLP listener as a lifecycle service: it listens until the group shuts down gracefully
/// (SIGTERM, SIGINT), then stops taking connections and messages, lets the messages it has
/// received be committed and acknowledged, and closes (`MLLPServer.shutdownGracefully`).
struct MLLPService: Service {
    let server: MLLPServer
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("HL7 v2 (MLLP): finishing the messages received, taking no more")
        await server.shutdownGracefully()
    }
}

/// The sweep of expired platform records (one-time ids, sessions, card uses), until shutdown.
struct ExpiredRecordSweepService: Service {
    let sweep: ExpiredRecordSweep
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { await sweep.run(logger: logger) }
    }
}
