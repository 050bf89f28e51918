import HL7v2
import Logging
import Notifications
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

/// The sweep of abandoned document streams (ADR 029), until shutdown.
struct DocumentStreamSweepService: Service {
    let sweep: DocumentStreamSweep
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { await sweep.run(logger: logger) }
    }
}

/// The change-feed dispatcher (ADR 020) as a lifecycle service: its consumers run until the group
/// shuts down (each position is saved after every batch it handled, so nothing is lost).
struct ChangeFeedService: Service {
    let dispatcher: ChangeFeedDispatcher

    func run() async throws {
        // With no consumer registered it still lives as long as the group (a service that returns
        // would end the group).
        guard !dispatcher.consumers.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown { await dispatcher.run() }
    }
}

/// The delivery of subscription notifications (ADR 023), until shutdown (an event is counted as
/// delivered only after its endpoint took it, so stopping loses nothing).
struct SubscriptionDeliveryService: Service {
    let delivery: SubscriptionDelivery

    func run() async throws {
        await cancelWhenGracefulShutdown { await delivery.run() }
    }
}

/// The reminder rules (提醒服务, ADR 023), run every interval until shutdown.
struct ReminderSweepService: Service {
    let reminders: ReminderService

    func run() async throws {
        await cancelWhenGracefulShutdown { await reminders.run() }
    }
}
