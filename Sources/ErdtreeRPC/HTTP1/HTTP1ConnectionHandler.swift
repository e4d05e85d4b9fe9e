import NIOCore
import NIOHTTP1

/// What the port answers over HTTP/1.1, behind NIOHTTP1's server pipeline (which keeps
/// pipelined requests in order and answers malformed ones with 400):
/// - `GET /healthz` for load balancers: 200 `SERVING` or 503 `NOT_SERVING`;
/// - Connect unary calls: `POST /package.Service/Method` with `application/proto` or
///   `application/json`, or `GET` with the message in the query for methods without side
///   effects, served by the router's unary handlers (JSON is transcoded to and from the
///   binary encoding by `ProtoJSON`), errors as Connect's JSON body and status;
/// - Connect server streaming (`application/connect+proto|json`): one request envelope in,
///   a chunked body of envelopes and the end-stream message out.
///
/// A request with `Upgrade: h2c` switches the connection to HTTP/2 (`H2CUpgrade`).
///
/// One request at a time per connection (the pipeline holds the next one back until this
/// one's response is written), so the handler keeps a single exchange's state.
final class HTTP1ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, ServerCallOwner {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let isServing: @Sendable () -> Bool
    private let makeHTTP2: () throws -> GRPCServerConnectionHandler
    private var context: ChannelHandlerContext?

    /// The request being read, and its body so far.
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyTooLarge = false
    /// The Connect call in progress, with the codec its answer uses.
    private var call: ServerCall?
    private var exchange: ConnectUnary?
    private var keepAlive = true
    /// The request asked to switch protocols and was not switched: its answer closes the
    /// connection (see `H2CUpgrade`).
    private var closeAfterAnswer = false
    private var draining = false

    /// - Parameter makeHTTP2: the handler that takes the connection over on `Upgrade: h2c`.
    init(
        router: RPCRouter, limits: RPCServer.Limits, isServing: @escaping @Sendable () -> Bool,
        makeHTTP2: @escaping () throws -> GRPCServerConnectionHandler
    ) {
        self.router = router
        self.limits = limits
        self.isServing = isServing
        self.makeHTTP2 = makeHTTP2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away mid-call: the handler learns through onCancel.
        if let call, call.finalStatus == nil { call.cancel() }
        call?.connection = nil
        call = nil
        context.fireChannelInactive()
    }

    /// Nothing read for `limits.idleTimeout`: an idle keep-alive connection, or a client that
    /// stalled inside a request, is closed; one waiting for its call's answer is left alone.
    /// A graceful shutdown (`RPCServer.Drain`): an idle connection closes now, a busy one after
    /// the answer in progress.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if call == nil { context.close(promise: nil) }
        } else if event is RPCServer.Drain {
            draining = true
            keepAlive = false
            if call == nil, head == nil { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = nil
            bodyTooLarge = false
        case .body(var chunk):
            guard !bodyTooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > limits.maxMessageBytes {
                // Read on to the end of the request, keeping nothing, then refuse it.
                bodyTooLarge = true
                body = nil
            } else if body == nil {
                body = chunk
            } else {
                body?.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if H2CUpgrade.asksToSwitch(head) {
                if upgrade(head, context: context) { return }
                closeAfterAnswer = true
            }
            serve(head, context: context)
        }
    }

    /// Switches the connection to HTTP/2 and serves `head` as its stream 1; false (nothing
    /// changed) when the request cannot be upgraded.
    private func upgrade(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> Bool {
        guard !bodyTooLarge, !head.uri.hasPrefix("/healthz"), let settings = H2CUpgrade.settings(head),
            let http2 = try? makeHTTP2(),
            (try? http2.session.upgrade(settings: settings, headRequest: head.method == .HEAD)) != nil
        else { return false }
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
        body = nil
        return true
    }

    // MARK: Requests

    private func serve(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        keepAlive = head.isKeepAlive && !closeAfterAnswer && !draining
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts.first ?? "")
        if path == "/healthz" { return healthz(head) }
        guard let index = Array(path.utf8).withUnsafeBytes({ router.routeIndex(for: $0) }) else {
            // Connect: an unknown procedure is 404 with code unimplemented.
            return fail(RPCStatus(.unimplemented, "\(path) is not a method this server has"), http: .notFound)
        }
        let route = router.route(at: index)
        let codec: ConnectProtocol.Codec
        var encoding = head.headers.first(name: "content-encoding")
        var request = body ?? context.channel.allocator.buffer(capacity: 0)
        body = nil
        switch head.method {
        case .POST:
            let contentType = head.headers.first(name: "content-type") ?? ""
            if let streamed = Array(contentType.utf8).withUnsafeBytes({ ConnectStreaming.codec(contentType: $0) }) {
                return serveStream(head, route: route, codec: streamed, body: request, context: context)
            }
            guard let posted = ConnectProtocol.codec(contentType: contentType) else {
                let given = head.headers.first(name: "content-type") ?? "none"
                return fail(
                    RPCStatus(
                        .unimplemented,
                        "content-type \(given) is not served; Connect unary takes application/proto or application/json"
                    ),
                    http: .unsupportedMediaType)
            }
            if bodyTooLarge {
                return fail(
                    RPCStatus(.resourceExhausted, "request body larger than the \(limits.maxMessageBytes)-byte limit"))
            }
            codec = posted
        case .GET where route.noSideEffects:
            switch ConnectProtocol.getRequest(query: parts.count > 1 ? parts[1] : "") {
            case .success(let (queried, message, compression)):
                codec = queried
                encoding = compression
                request = context.channel.allocator.buffer(bytes: message)
            case .failure(let status):
                return fail(status)
            }
        default:
            let allowed = route.noSideEffects ? "GET, POST" : "POST"
            return fail(
                RPCStatus(.unimplemented, "\(path) takes \(allowed)"), http: .methodNotAllowed,
                extra: [("allow", allowed)])
        }
        exchange = ConnectUnary(codec: codec, acceptEncoding: head.headers.first(name: "accept-encoding"))
        let prepared = ConnectUnary.prepare(
            route: route, codec: codec, version: head.headers.first(name: "connect-protocol-version"),
            timeout: head.headers.first(name: "connect-timeout-ms"), encoding: encoding, body: request,
            maxBytes: limits.maxMessageBytes, allocator: context.channel.allocator)
        guard case .success(let (request, timeoutMs)) = prepared, case .unary(let handler) = route.handler else {
            if case .failure(let refusal) = prepared { fail(refusal.status, http: refusal.http) }
            return
        }
        let call = startCall(route, context: context)
        call.timeoutNanos = timeoutMs.map { $0 * 1_000_000 }
        call.armDeadline()
        call.handlerStarted = true
        handler(request, call)
    }

    private func startCall(_ route: RPCRouter.Route, context: ChannelHandlerContext) -> ServerCall {
        let call = ServerCall(
            streamID: 0, connection: self, eventLoop: context.eventLoop, allocator: context.channel.allocator,
            maxMessageBytes: limits.maxMessageBytes)
        call.route = route
        self.call = call
        return call
    }

    /// Connect streaming over HTTP/1.1: the request is one message in an envelope, the
    /// answer a chunked body of envelopes ending with the end-stream message. Server
    /// streaming (and unary) methods only: the client has sent its whole request before it
    /// reads the answer.
    private func serveStream(
        _ head: HTTPRequestHead, route: RPCRouter.Route, codec: ConnectProtocol.Codec, body: ByteBuffer,
        context: ChannelHandlerContext
    ) {
        if case .bidirectional = route.handler {
            // A client coded for full duplex would wait forever for answers to messages it
            // cannot send; closing the connection unblocks it (connect-go does the same).
            keepAlive = false
            return fail(
                RPCStatus(
                    .unimplemented,
                    "\(route.path) is a bidirectional stream, which needs HTTP/2 (prior knowledge or Upgrade: h2c)"),
                http: .httpVersionNotSupported)
        }
        let call = startCall(route, context: context)
        call.contentEncoding = head.headers.first(name: "connect-content-encoding")
        call.connectAcceptEncoding = head.headers.first(name: "connect-accept-encoding")
        call.connectTimeout = head.headers.first(name: "connect-timeout-ms")
        if let refusal = ConnectStreaming.configure(call, codec: codec) { return call.finishOnLoop(refusal) }
        if bodyTooLarge {
            return call.finishOnLoop(
                RPCStatus(.resourceExhausted, "request body larger than the \(limits.maxMessageBytes)-byte limit"))
        }
        let message: ByteBuffer?
        do throws(RPCStatus) {
            body.withUnsafeReadableBytes { call.deframer.append($0) }
            message = try call.deframer.next()
            if message != nil, try call.deframer.next() != nil || call.deframer.hasPartialMessage {
                return call.finishOnLoop(
                    RPCStatus(.invalidArgument, "\(route.path) takes one request message, got more"))
            }
        } catch {
            return call.finishOnLoop(error)
        }
        guard let message else {
            return call.finishOnLoop(
                RPCStatus(
                    .invalidArgument,
                    call.deframer.hasPartialMessage
                        ? "request ended inside a message: got \(call.deframer.partialMessageDescription)"
                        : "\(route.path) requires a request message, got none"))
        }
        switch ConnectStreaming.request(message, codec: codec, route: route, allocator: call.allocator) {
        case .failure(let status):
            call.finishOnLoop(status)
        case .success(let request):
            call.armDeadline()
            call.handlerStarted = true
            switch route.handler {
            case .unary(let handler), .serverStreaming(let handler): handler(request, call)
            case .bidirectional: break
            }
        }
    }

    private func healthz(_ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            return write(
                .methodNotAllowed, body: ByteBuffer(string: "/healthz takes GET or HEAD\n"),
                contentType: "text/plain; charset=utf-8",
                extra: [("allow", "GET, HEAD")], omitBody: false)
        }
        let serving = isServing()
        write(
            serving ? .ok : .serviceUnavailable, body: ByteBuffer(string: serving ? "SERVING\n" : "NOT_SERVING\n"),
            contentType: "text/plain; charset=utf-8", extra: [("cache-control", "no-store")],
            omitBody: head.method == .HEAD)
    }

    // MARK: Answers

    /// The call queued an answer or finished: a unary call is answered once, when it
    /// finishes; a stream's messages go out as they come.
    func callHasOutput(_ call: ServerCall) {
        guard call === self.call, !call.closed else { return }
        if let codec = call.connectStream { return streamHasOutput(call, codec: codec) }
        guard call.finalStatus != nil, let exchange else { return }
        endExchange(call)
        let response = exchange.response(to: call)
        write(
            response.status, body: response.body, contentType: response.contentType,
            extra: response.contentEncoding.map { [("content-encoding", $0)] } ?? [], omitBody: false)
    }

    private func endExchange(_ call: ServerCall) {
        call.closed = true
        self.call = nil
        call.connection = nil
        call.releaseCallbacks()
    }

    /// Writes what a streaming call queued: the response head first (chunked: no length),
    /// then its envelopes, then, once it finished, the end-stream message and the end of
    /// the body. While the socket will take no more, the rest stays queued on the call,
    /// where a streaming handler sees it (`pendingOutboundBytes`) and can stop producing.
    private func streamHasOutput(_ call: ServerCall, codec: ConnectProtocol.Codec) {
        guard let context else { return }
        if let status = call.finalStatus, !call.endStreamQueued {
            call.endStreamQueued = true
            ConnectStreaming.endStream(status, into: &call.outbound)
        }
        if !call.responseHeadersSent {
            call.responseHeadersSent = true
            var headers = HTTPHeaders(ConnectStreaming.responseHeaders(call, codec: codec))
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil)
        }
        guard context.channel.isWritable else { return context.flush() }
        if call.outbound.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(call.outbound))), promise: nil)
            call.outbound = context.channel.allocator.buffer(capacity: 0)
        }
        guard call.endStreamQueued else { return context.flush() }
        endExchange(call)
        finishResponse(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let call, let codec = call.connectStream {
            streamHasOutput(call, codec: codec)
        }
        context.fireChannelWritabilityChanged()
    }

    private func fail(_ status: RPCStatus, http: HTTPResponseStatus? = nil, extra: [(String, String)] = []) {
        let response = ConnectUnary.error(
            status, http: http, allocator: context?.channel.allocator ?? ByteBufferAllocator())
        write(response.status, body: response.body, contentType: response.contentType, extra: extra, omitBody: false)
    }

    private func write(
        _ status: HTTPResponseStatus, body: ByteBuffer, contentType: String, extra: [(String, String)], omitBody: Bool
    ) {
        guard let context else { return }
        var headers = HTTPHeaders(extra)
        headers.add(name: "content-type", value: contentType)
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
