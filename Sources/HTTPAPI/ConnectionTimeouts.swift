import FHIRModel
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Connection time limits (ADR 016): a request's head must arrive whole within the header
/// timeout of its first byte (slow-header attacks hold connections by sending a header a byte at
/// a time); a connection with no request in progress is closed after the idle timeout
/// (Hummingbird's idle handler, configured beside this one: `HuitongApplication.make`).
/// Closes a connection whose request head does not arrive in time. It sits after the HTTP
/// decoder, where a head is seen whole, and puts a watcher of raw bytes at the front of the
/// pipeline, which starts the clock when the first byte of a request arrives.
final class RequestHeadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let timeout: TimeAmount
    let logger: Logger
    /// Between requests: the next bytes begin a head.
    private var betweenRequests = true
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    /// A request head that is not HTTP/1.1 (a raw non-ASCII character in the URL, a broken header)
    /// is answered here with an OperationOutcome saying so, and logged, rather than with an empty
    /// 400; the connection closes, since nothing after it can be framed. Errors inside a request
    /// (a body's bad chunk) go on to the route, which answers them.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard betweenRequests, let parse = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        deadline?.cancel()
        deadline = nil
        logger.notice("Refused a request head that is not valid HTTP/1.1 (\(parse)) from \(context.remoteAddress?.description ?? "unknown")")
        let advice = "The request line or headers are not valid HTTP/1.1 (\(parse)). A URL is ASCII: percent-encode other characters "
            + "(UTF-8), e.g. with curl -G --data-urlencode 'subject:Patient.name=张'"
        let body = JSONWriter.bytes(OperationOutcome.make([Issue(code: "structure", advice)]))
        var head = HTTPResponse(status: .badRequest)
        head.headerFields[.contentType] = "application/fhir+json; charset=utf-8"
        head.headerFields[.contentLength] = String(body.count)
        head.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(bytes: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let watcher = FirstBytesWatcher { [weak self] in
            loop.assertInEventLoop()
            self?.bytesArrived(context)
        }
        try? context.pipeline.syncOperations.addHandler(watcher, position: .first)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func bytesArrived(_ context: ChannelHandlerContext) {
        guard betweenRequests, deadline == nil else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, self.betweenRequests else { return }
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            betweenRequests = false
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { betweenRequests = true }
        context.write(data, promise: promise)
    }
}

/// Tells its owner that bytes arrived (at the front of the pipeline: before TLS and HTTP decoding).
final class FirstBytesWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let arrived: () -> Void

    init(_ arrived: @escaping () -> Void) {
        self.arrived = arrived
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        arrived()
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension RequestHeadTimeoutHandler: Sendable {}
@available(*, unavailable)
extension FirstBytesWatcher: Sendable {}
