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
    public var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// - Parameter tls: MLLP over TLS (the sender's connection is encrypted end to end).
    public static func start(host: String, port: Int, maxMessageBytes: Int, tls: TLSConfiguration? = nil,
                             group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                             handler: @escaping Handler) async throws -> MLLPServer {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MLLPFrameDecoder(maxBytes: maxMessageBytes)))
                    try channel.pipeline.syncOperations.addHandler(MLLPConnectionHandler(handler: handler))
                }
            }
            .bind(host: host, port: port).get()
        return MLLPServer(channel: channel)
    }

    public func close() async throws {
        try await channel.close()
    }
}

/// One connection: frames go into a queue worked off by one task, so answers keep their order.
final class MLLPConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = MLLPFrame
    typealias OutboundOut = ByteBuffer

    let handler: MLLPServer.Handler
    private var continuation: AsyncStream<MLLPFrame>.Continuation?

    init(handler: @escaping MLLPServer.Handler) {
        self.handler = handler
    }

    func channelActive(context: ChannelHandlerContext) {
        let (stream, continuation) = AsyncStream<MLLPFrame>.makeStream()
        self.continuation = continuation
        let channel = context.channel
        let peer = channel.remoteAddress?.description ?? "unknown"
        let handler = self.handler
        Task {
            for await frame in stream {
                let answer = await handler(frame, peer)
                guard channel.isActive else { break }
                var buffer = channel.allocator.buffer(capacity: answer.count + 3)
                buffer.writeBytes(MLLP.frame(answer))
                try? await channel.writeAndFlush(buffer)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation?.yield(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation?.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
