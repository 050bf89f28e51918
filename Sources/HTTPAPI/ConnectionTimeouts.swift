import FHIRModel
import HTTPTypes
import HummingbirdCore
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

/// The deadlines of a connection's first request head where the pipeline's HTTP handlers are only
/// set up once that head has arrived (the websocket upgrade channel decides on the head whether
/// the connection stays HTTP): closed when nothing arrives within `idle`, or when the head is not
/// complete (`CRLF CRLF`) within `head` of its first byte. It leaves the pipeline once the head is
/// in; the HTTP handlers then keep the deadlines of the requests that follow.
final class FirstHeadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let head: TimeAmount
    let idle: TimeAmount
    private var deadline: Scheduled<Void>?
    private var started = false
    /// The last bytes seen, for a `CRLF CRLF` split across reads.
    private var tail: [UInt8] = []

    init(head: TimeAmount, idle: TimeAmount) {
        self.head = head
        self.idle = idle
    }

    func handlerAdded(context: ChannelHandlerContext) {
        schedule(context, idle)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func schedule(_ context: ChannelHandlerContext, _ after: TimeAmount) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: after) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !started {
            started = true
            schedule(context, head)
        }
        let bytes = tail + Array(buffer.readableBytesView)
        let complete = bytes.count >= 4 && (0...(bytes.count - 4)).contains { i in
            bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10
        }
        tail = Array(bytes.suffix(3))
        context.fireChannelRead(data)
        if complete {
            deadline?.cancel()
            deadline = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

@available(*, unavailable)
extension FirstHeadDeadline: Sendable {}

/// A child channel with `FirstHeadDeadline` in front of `base`'s handlers (inside TLS, if any).
struct FirstHeadDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let head: TimeAmount
    let idle: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(FirstHeadDeadline(head: head, idle: idle))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Answers `Expect: 100-continue` (RFC 9110 §10.1.1) with `100 Continue` once the request is the
/// one being answered, so a client that asks before sending a large body (curl does for bodies
/// over 1 MB, and many HTTP libraries) sends it at once instead of after its own timeout (curl
/// waits a second). A pipelined request's `100` waits for the responses before it to end: it is
/// never written into another response. The route reads or drains every body, so the client may
/// always go on; a request refused before its body is read (401, 413) gets its final status after
/// the `100`, which RFC 9110 allows. (HTTP/1.0 requests, which must not get one, are not told apart:
/// the HTTP types this handler sees carry no version.)
final class ExpectContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The requests whose responses have not ended, in order: whether each still waits for its `100`.
    private var waiting: [Bool] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            waiting.append(head.headerFields[.expect]?.lowercased() == "100-continue")
            if waiting.count == 1 { continueFirst(context) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        // A final answer ends the wait (no `100` after it).
        if case .head(let head) = part, head.status.kind != .informational, !waiting.isEmpty { waiting[0] = false }
        context.write(data, promise: promise)
        if case .end = part, !waiting.isEmpty {
            waiting.removeFirst()
            continueFirst(context)
        }
    }

    private func continueFirst(_ context: ChannelHandlerContext) {
        guard waiting.first == true else { return }
        waiting[0] = false
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
    }
}

@available(*, unavailable)
extension ExpectContinueHandler: Sendable {}
