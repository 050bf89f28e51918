import Synchronization
import NIOCore
import NIOPosix
import NIOSSL

/// MLLP (Minimal Lower Layer Protocol) framing: `0x0B message 0x1C 0x0D`.
public enum MLLP {
    public static let start: UInt8 = 0x0B
    public static let end: [UInt8] = [0x1C, 0x0D]

    public static func frame(_ bytes: [UInt8]) -> [UInt8] { [start] + bytes + end }
}

/// What the decoder delivers: a whole message, or the start of one that was cut off (too large,
/// or followed by a new start block before its end) — answered from what its MSH says.
public enum MLLPFrame: Sendable, Equatable {
    case message([UInt8])
    case broken(prefix: [UInt8], reason: String)
}

/// Splits the byte stream into frames; bytes outside a frame are skipped. A frame longer than
/// `maxBytes` is delivered as `.broken` once and the rest of it is skipped up to its end block.
public struct MLLPFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = MLLPFrame
    let maxBytes: Int
    /// Inside an oversized frame being skipped.
    var skipping = false

    public init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // (The view's indices are the buffer's own: absolute reader positions.)
        let view = buffer.readableBytesView
        if skipping {
            guard let endAt = Self.endBlock(in: view) else {
                buffer.moveReaderIndex(to: max(buffer.readerIndex, buffer.writerIndex - 1))  // keep a possible 0x1C
                return .needMoreData
            }
            buffer.moveReaderIndex(to: endAt + 2)
            skipping = false
            return .continue
        }
        guard let startAt = view.firstIndex(of: MLLP.start) else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let body = view[(startAt + 1)...]
        // A new start block before this frame's end: the frame was cut off.
        let nextStart = body.firstIndex(of: MLLP.start)
        let endAt = Self.endBlock(in: body)
        if let nextStart, endAt == nil || nextStart < endAt! {
            let prefix = Array(view[(startAt + 1)..<nextStart].prefix(4096))
            buffer.moveReaderIndex(to: nextStart)
            context.fireChannelRead(wrapInboundOut(.broken(prefix: prefix, reason: "The frame ended without its end block (0x1C 0x0D)")))
            return .continue
        }
        guard let endAt else {
            if body.count > maxBytes {
                let prefix = Array(body.prefix(4096))
                buffer.moveReaderIndex(to: buffer.writerIndex)
                skipping = true
                context.fireChannelRead(wrapInboundOut(.broken(prefix: prefix, reason: "The message is larger than \(maxBytes) bytes")))
                return .continue
            }
            buffer.moveReaderIndex(to: startAt)
            return .needMoreData
        }
        let message = Array(view[(startAt + 1)..<endAt])
        buffer.moveReaderIndex(to: endAt + 2)
        if message.count > maxBytes {
            context.fireChannelRead(wrapInboundOut(.broken(prefix: Array(message.prefix(4096)), reason: "The message is larger than \(maxBytes) bytes")))
        } else {
            context.fireChannelRead(wrapInboundOut(.message(message)))
        }
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A frame cut off by the connection closing has nobody left to answer.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    static func endBlock<C: Collection>(in bytes: C) -> C.Index? where C.Element == UInt8 {
        var i = bytes.startIndex
        while let at = bytes[i...].firstIndex(of: 0x1C) {
            let next = bytes.index(after: at)
            guard next < bytes.endIndex else { return nil }
            if bytes[next] == 0x0D { return at }
            i = next
        }
        return nil
    }
}

/// An MLLP listener: each connection's frames are handed to `handler` one at a time and its
/// answers written back in order (a sender waits for each ACK; a pipelining sender gets them in
/// the order it sent).
public final class MLLPServer: Sendable {
    public typealias Handler = @Sendable (MLLPFrame, _ peer: String) async -> [UInt8]

    let channel: any Channel
    let connections: MLLPConnections
    public var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel, connections: MLLPConnections) {
        self.channel = channel
        self.connections = connections
    }

    /// - Parameter tls: MLLP over TLS (the sender's connection is encrypted end to end).
    public static func start(host: String, port: Int, maxMessageBytes: Int, tls: TLSConfiguration? = nil,
                             group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                             handler: @escaping Handler) async throws -> MLLPServer {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        let connections = MLLPConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MLLPFrameDecoder(maxBytes: maxMessageBytes)))
                    try channel.pipeline.syncOperations.addHandler(MLLPConnectionHandler(handler: handler, connections: connections))
                }
            }
            .bind(host: host, port: port).get()
        return MLLPServer(channel: channel, connections: connections)
    }

    /// Stops at once: the listener and every connection (a message being handled is not answered).
    public func close() async throws {
        try await channel.close()
        connections.closeAll()
    }

    /// Stops accepting connections and messages, lets every message already received be handled
    /// and answered (its ACK sent after its commit), then closes the connections — or, after
    /// `timeout`, closes them regardless. No acknowledged message is lost either way: an ACK
    /// leaves only after its commit.
    public func shutdownGracefully(timeout: Duration = .seconds(8)) async {
        try? await channel.close()
        connections.drain()
        let deadline = ContinuousClock.now + timeout
        while connections.busy, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        connections.closeAll()
    }
}

/// The open connections and how many received messages are still being handled.
final class MLLPConnections: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var pending = 0
        var draining = false
    }
    private let state = Mutex(State())

    var busy: Bool { state.withLock { $0.pending > 0 } }
    var draining: Bool { state.withLock { $0.draining } }

    /// Registers a connection; false when the server is draining (the connection is closed).
    func opened(_ channel: any Channel) -> Bool {
        state.withLock { s in
            guard !s.draining else { return false }
            s.channels[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    func closed(_ channel: any Channel) { state.withLock { _ = $0.channels.removeValue(forKey: ObjectIdentifier(channel)) } }

    /// A message was received (false: draining, it is not taken).
    func received() -> Bool {
        state.withLock { s in
            guard !s.draining else { return false }
            s.pending += 1
            return true
        }
    }

    func answered() { state.withLock { $0.pending -= 1 } }

    func drain() { state.withLock { $0.draining = true } }

    func closeAll() {
        let open = state.withLock { s in
            defer { s.channels.removeAll() }
            return Array(s.channels.values)
        }
        for channel in open { channel.close(promise: nil) }
    }
}

/// One connection: frames go into a queue worked off by one task, so answers keep their order.
final class MLLPConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = MLLPFrame
    typealias OutboundOut = ByteBuffer

    let handler: MLLPServer.Handler
    let connections: MLLPConnections
    private var continuation: AsyncStream<MLLPFrame>.Continuation?

    init(handler: @escaping MLLPServer.Handler, connections: MLLPConnections) {
        self.handler = handler
        self.connections = connections
    }

    func channelActive(context: ChannelHandlerContext) {
        guard connections.opened(context.channel) else {
            context.close(promise: nil)
            return
        }
        let (stream, continuation) = AsyncStream<MLLPFrame>.makeStream()
        self.continuation = continuation
        let channel = context.channel
        let peer = channel.remoteAddress?.description ?? "unknown"
        let handler = self.handler
        let connections = self.connections
        Task {
            for await frame in stream {
                defer { connections.answered() }
                // A message whose sender has gone is not handled: it never gets an ACK, so it is sent again.
                guard channel.isActive else { continue }
                let answer = await handler(frame, peer)
                guard channel.isActive else { continue }
                var buffer = channel.allocator.buffer(capacity: answer.count + 3)
                buffer.writeBytes(MLLP.frame(answer))
                try? await channel.writeAndFlush(buffer)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // While the server drains, a new message is not taken (the sender sends it again elsewhere or later).
        guard connections.received() else { return }
        continuation?.yield(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        connections.closed(context.channel)
        continuation?.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
