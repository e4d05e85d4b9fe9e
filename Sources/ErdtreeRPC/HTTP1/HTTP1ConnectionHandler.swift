import Logging
import NIOCore
import NIOHTTP1

/// What the port answers over HTTP/1.1, behind NIOHTTP1's server pipeline (which keeps
/// pipelined requests in order and answers malformed ones with 400):
/// - `GET /healthz` for load balancers: 200 `SERVING` or 503 `NOT_SERVING`;
/// - Connect unary calls: `POST /package.Service/Method` with `application/proto` or
///   `application/json`, served by the router's unary handlers (JSON is transcoded to and
///   from the binary encoding by `ProtoJSON`), errors as Connect's JSON body and status.
///
/// One request at a time per connection (the pipeline holds the next one back until this
/// one's response is written), so the handler keeps a single exchange's state.
final class HTTP1ConnectionHandler: ChannelInboundHandler, ServerCallOwner {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let isServing: @Sendable () -> Bool
    private let logger: Logger
    private var context: ChannelHandlerContext?

    /// The request being read, and its body so far.
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyTooLarge = false
    /// The Connect call in progress, with the codec its answer uses.
    private var call: ServerCall?
    private var codec: ConnectProtocol.Codec = .proto
    private var keepAlive = true

    init(router: RPCRouter, limits: RPCServer.Limits, logger: Logger, isServing: @escaping @Sendable () -> Bool) {
        self.router = router
        self.limits = limits
        self.logger = logger
        self.isServing = isServing
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
            serve(head, context: context)
        }
    }

    // MARK: Requests

    private func serve(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        keepAlive = head.isKeepAlive
        let path = String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        if path == "/healthz" { return healthz(head) }
        guard let index = Array(path.utf8).withUnsafeBytes({ router.routeIndex(for: $0) }) else {
            // Connect: an unknown procedure is 404 with code unimplemented.
            return fail(RPCStatus(.unimplemented, "\(path) is not a method this server has"), http: .notFound)
        }
        let route = router.route(at: index)
        guard head.method == .POST else {
            return fail(
                RPCStatus(.unimplemented, "\(path) takes POST over HTTP/1.1"), http: .methodNotAllowed,
                extra: [("allow", "POST")])
        }
        guard let codec = ConnectProtocol.codec(contentType: head.headers.first(name: "content-type") ?? "") else {
            let given = head.headers.first(name: "content-type") ?? "none"
            return fail(
                RPCStatus(
                    .unimplemented,
                    "content-type \(given) is not served; Connect unary takes application/proto or application/json"),
                http: .unsupportedMediaType)
        }
        self.codec = codec
        if let version = head.headers.first(name: "connect-protocol-version"), version != "1" {
            return fail(RPCStatus(.invalidArgument, "connect-protocol-version \(version) is not 1"))
        }
        if bodyTooLarge {
            return fail(
                RPCStatus(.resourceExhausted, "request body larger than the \(limits.maxMessageBytes)-byte limit"))
        }
        guard case .unary(let handler) = route.handler else {
            return fail(
                RPCStatus(
                    .unimplemented, "\(path) is a streaming method; this server takes only unary calls over Connect"),
                http: .unsupportedMediaType)
        }
        var request = body ?? context.channel.allocator.buffer(capacity: 0)
        body = nil
        if codec == .json {
            guard let messages = route.messages else {
                return fail(RPCStatus(.unimplemented, "\(path) has no JSON mapping; use application/proto"))
            }
            do throws(ProtoJSON.Failure) {
                let json = request.readBytes(length: request.readableBytes) ?? []
                request = context.channel.allocator.buffer(bytes: try ProtoJSON.decode(json, as: messages.input))
            } catch {
                return fail(RPCStatus(.invalidArgument, error.message))
            }
        }
        let call = ServerCall(
            streamID: 0, connection: self, eventLoop: context.eventLoop, allocator: context.channel.allocator,
            maxMessageBytes: limits.maxMessageBytes)
        call.route = route
        self.call = call
        if let timeout = head.headers.first(name: "connect-timeout-ms") {
            guard let milliseconds = Int64(timeout), milliseconds >= 0, timeout.count <= 10 else {
                return call.finishOnLoop(
                    RPCStatus(.invalidArgument, "connect-timeout-ms \(timeout) is not 0-10 digits"))
            }
            call.setDeadline(fromNowNanos: milliseconds * 1_000_000)
            call.deadlineTask = context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) { [weak call] in
                guard let call, call.finalStatus == nil else { return }
                call.cancel()
                call.finishOnLoop(RPCStatus(.deadlineExceeded, "deadline of \(milliseconds) ms exceeded"))
            }
        }
        call.handlerStarted = true
        handler(request, call)
    }

    private func healthz(_ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            return write(
                .methodNotAllowed, body: Array("/healthz takes GET or HEAD\n".utf8),
                contentType: "text/plain; charset=utf-8",
                extra: [("allow", "GET, HEAD")], omitBody: false)
        }
        let serving = isServing()
        write(
            serving ? .ok : .serviceUnavailable, body: Array((serving ? "SERVING\n" : "NOT_SERVING\n").utf8),
            contentType: "text/plain; charset=utf-8", extra: [("cache-control", "no-store")],
            omitBody: head.method == .HEAD)
    }

    // MARK: Answers

    /// The call queued its answer or finished: a unary call is answered once, when it finishes.
    func callHasOutput(_ call: ServerCall) {
        guard call === self.call, let status = call.finalStatus, !call.closed else { return }
        call.closed = true
        self.call = nil
        call.connection = nil
        guard status.code == .ok else { return fail(status) }
        // The message was framed for gRPC (5-byte prefix); Connect unary sends it bare.
        var framed = call.outbound
        guard framed.readableBytes >= GRPCMessageFramer.headroomBytes else {
            return fail(RPCStatus(.internal, "the method finished OK without a response message"))
        }
        framed.moveReaderIndex(forwardBy: GRPCMessageFramer.headroomBytes)
        var message = framed.readBytes(length: framed.readableBytes) ?? []
        if codec == .json {
            guard let messages = call.route?.messages else {
                return fail(RPCStatus(.internal, "no JSON mapping for the response"))
            }
            let encoded = message.withUnsafeBytes { bytes in
                Result { () throws(ProtoJSON.Failure) in try ProtoJSON.encode(bytes, as: messages.output) }
            }
            switch encoded {
            case .success(let json): message = json
            case .failure(let error): return fail(RPCStatus(.internal, error.message))
            }
        }
        write(.ok, body: message, contentType: codec.contentType, extra: [], omitBody: false)
    }

    private func fail(_ status: RPCStatus, http: HTTPResponseStatus? = nil, extra: [(String, String)] = []) {
        write(
            http ?? ConnectProtocol.httpStatus(status.code), body: ConnectProtocol.errorBody(status),
            contentType: "application/json", extra: extra, omitBody: false)
    }

    private func write(
        _ status: HTTPResponseStatus, body: [UInt8], contentType: String, extra: [(String, String)], omitBody: Bool
    ) {
        guard let context else { return }
        var headers = HTTPHeaders(extra)
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil)
        if !omitBody, !body.isEmpty {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
