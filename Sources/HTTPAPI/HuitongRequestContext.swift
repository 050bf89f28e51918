import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's core context and the client's address
/// (for audit events).
public struct HuitongRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}
