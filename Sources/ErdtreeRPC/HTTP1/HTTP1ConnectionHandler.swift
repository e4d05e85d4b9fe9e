import NIOCore
import NIOHTTP1

/// What the port answers over HTTP/1.1, behind NIOHTTP1's server pipeline (which keeps
/// pipelined requests in order and answers malformed ones with 400):
/// - `GET /healthz` for load balancers: 200 `SERVING` or 503 `NOT_SERVING`;
/// - Connect calls — unary POST, GET for methods without side effects, server streaming —
///   through a `ServerCall` per request, whose state machine holds every protocol rule; this
///   handler turns its answers into HTTP/1.1 responses (a content-length for whole answers, a
///   chunked body of envelopes for streams);
/// - `Upgrade: h2c`, which switches the connection to HTTP/2 (`H2CUpgrade`).
///
/// One request at a time per connection (the pipeline holds the next one back until this
/// one's response is written), so the handler keeps a single exchange's state.
final class HTTP1ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, ServerStreamTransport {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The request being served.
    private enum Exchange {
        case healthz(HTTPRequestHead)
        case call(ServerCall)
    }

    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let isServing: @Sendable () -> Bool
    var isNodeServing: Bool { isServing() }
    var observer: (any RPCObserver)? { router.observer }
    private let makeHTTP2: (() throws -> HTTP2ServerConnectionHandler)?
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    /// A request that asked to switch protocols: its head and body, kept (up to the message
    /// limit, past which it is not upgraded) in case it is replayed as HTTP/2 stream 1.
    private var switchRequest: (head: HTTPRequestHead, body: ByteBuffer?, tooLarge: Bool)?
    private var keepAlive = true
    private var draining = false

    /// - Parameter makeHTTP2: the handler that takes the connection over on `Upgrade: h2c`;
    ///   nil over TLS, where h2c does not exist (RFC 9113 §3.1: ALPN chose HTTP/1.1).
    init(
        router: RPCRouter, limits: RPCServer.Limits, isServing: @escaping @Sendable () -> Bool,
        makeHTTP2: (() throws -> HTTP2ServerConnectionHandler)?
    ) {
        self.router = router
        self.limits = limits
        self.isServing = isServing
        self.makeHTTP2 = makeHTTP2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        router.observer?.connectionOpened(.http1)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        router.observer?.connectionClosed(.http1)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away mid-call: the handler learns through onCancel.
        if case .call(let call) = exchange { call.close() }
        exchange = nil
        context.fireChannelInactive()
    }

    /// Nothing read for `limits.idleTimeout`: an idle keep-alive connection, or a client that
    /// stalled inside a request, is closed; one waiting for its call's answer is left alone.
    /// A graceful shutdown (`RPCServer.Drain`): an idle connection closes now, a busy one after
    /// the answer in progress.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if case .call(let call) = exchange, !call.requestIsOpen { return }
            context.close(promise: nil)
        } else if event is RPCServer.Drain {
            draining = true
            keepAlive = false
            if exchange == nil { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive && !draining
            switchRequest = H2CUpgrade.asksToSwitch(head) ? (head, nil, false) : nil
            if head.uri == "/healthz" || head.uri.hasPrefix("/healthz?") {
                exchange = .healthz(head)
                return
            }
            let call = ServerCall(
                streamID: 0, transport: self, kind: .http1, eventLoop: context.eventLoop,
                allocator: context.channel.allocator, maxMessageBytes: limits.maxMessageBytes)
            exchange = .call(call)
            let fields = head.headers.lazy.map { (name: $0.name, value: $0.value) }
            call.receiveHead(RequestHead(method: head.method.rawValue, uri: head.uri, fields: fields, router: router))
        case .body(let chunk):
            keepForUpgrade(chunk)
            if case .call(let call) = exchange { chunk.withUnsafeReadableBytes { call.receiveData($0) } }
        case .end:
            if let request = switchRequest {
                switchRequest = nil
                if !request.tooLarge, upgrade(request.head, body: request.body, context: context) { return }
                // It asked to switch and was not switched: NIOHTTP1's decoder parses nothing
                // after such a request (llhttp stops at the switch point), so its answer closes
                // the connection.
                keepAlive = false
            }
            switch exchange {
            case .healthz(let head): healthz(head)
            case .call(let call): call.receiveEnd()
            case nil: break
            }
        }
    }

    private func keepForUpgrade(_ chunk: ByteBuffer) {
        guard var request = switchRequest, !request.tooLarge else { return }
        var chunk = chunk
        if (request.body?.readableBytes ?? 0) + chunk.readableBytes > limits.maxMessageBytes {
            request = (request.head, nil, true)
        } else if request.body == nil {
            request.body = chunk
        } else {
            request.body?.writeBuffer(&chunk)
        }
        switchRequest = request
    }

    /// Switches the connection to HTTP/2 and serves `head` as its stream 1; false (nothing
    /// changed) when the request cannot be upgraded.
    private func upgrade(_ head: HTTPRequestHead, body: ByteBuffer?, context: ChannelHandlerContext) -> Bool {
        guard !head.uri.hasPrefix("/healthz"), let settings = H2CUpgrade.settings(head),
            let http2 = try? makeHTTP2?(),
            (try? http2.session.upgrade(settings: settings, headRequest: head.method == .HEAD)) != nil
        else { return false }
        // The HTTP/1.1 call never started (this transport answers only once a request ended).
        if case .call(let call) = exchange { call.close() }
        exchange = nil
        let pipeline = context.pipeline.syncOperations
        H2CUpgrade.removeHTTP1Handlers(from: pipeline)
        context.write(NIOAny(H2CUpgrade.switchingProtocols), promise: nil)
        do {
            try pipeline.addHandler(http2)  // flushes the 101 and the server's SETTINGS
        } catch {
            context.close(promise: nil)
            return true
        }
        pipeline.removeHandler(context: context, promise: nil)
        http2.serveUpgradedRequest(head, body: body ?? context.channel.allocator.buffer(capacity: 0))
        return true
    }

    private func healthz(_ head: HTTPRequestHead) {
        exchange = nil
        guard head.method == .GET || head.method == .HEAD else {
            return write(
                .methodNotAllowed, body: ByteBuffer(string: "/healthz takes GET or HEAD\n"),
                contentType: "text/plain; charset=utf-8", extra: [("allow", "GET, HEAD")], omitBody: false)
        }
        let serving = isServing()
        write(
            serving ? .ok : .serviceUnavailable, body: ByteBuffer(string: serving ? "SERVING\n" : "NOT_SERVING\n"),
            contentType: "text/plain; charset=utf-8", extra: [("cache-control", "no-store")],
            omitBody: head.method == .HEAD)
    }

    // MARK: Answers

    func writeResponseHead(_ head: ResponseHead, hasBody: Bool, for call: ServerCall) {
        guard let context, case .call(let current) = exchange, current === call else { return }
        switch head {
        case .whole(let whole):
            if whole.closesConnection { keepAlive = false }
            var extra: [(String, String)] = []
            if let allow = whole.allow { extra.append(("allow", allow)) }
            if let encoding = whole.contentEncoding { extra.append(("content-encoding", encoding)) }
            extra += whole.metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            let body = call.takeBody().bytes
            endExchange(call)
            write(whole.status, body: body, contentType: whole.contentType, extra: extra, omitBody: false)
        case .connectStream(let options):
            var headers = HTTPHeaders(options.responseHeaders)
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil)
            streamBody(call, context: context)
        case .grpc, .grpcTrailersOnly:
            // gRPC is never planned over HTTP/1.1 (its content type is refused with 415).
            endExchange(call)
            keepAlive = false
            write(.internalServerError, body: ByteBuffer(), contentType: nil, extra: [], omitBody: false)
        }
    }

    func resumeResponse(for call: ServerCall) {
        guard let context, case .call(let current) = exchange, current === call else { return }
        streamBody(call, context: context)
    }

    /// Writes what a streaming call queued, and ends the body once it is complete. While the
    /// socket will take no more, the rest stays queued on the call, where a streaming handler
    /// sees it (`pendingOutboundBytes`) and can stop producing.
    private func streamBody(_ call: ServerCall, context: ChannelHandlerContext) {
        guard context.channel.isWritable else { return context.flush() }
        let (bytes, ended) = call.takeBody()
        if bytes.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
        guard ended else { return context.flush() }
        endExchange(call)
        finishResponse(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .call(let call) = exchange { streamBody(call, context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func endExchange(_ call: ServerCall) {
        exchange = nil
        call.close()
    }

    private func write(
        _ status: HTTPResponseStatus, body: ByteBuffer, contentType: String?, extra: [(String, String)],
        omitBody: Bool
    ) {
        guard let context else { return }
        var headers = HTTPHeaders(extra)
        if let contentType { headers.add(name: "content-type", value: contentType) }
        headers.add(name: "content-length", value: String(body.readableBytes))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil)
        if !omitBody, body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        finishResponse(context)
    }

    /// Ends the response, and the connection when it does not stay open.
    private func finishResponse(_ context: ChannelHandlerContext) {
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
