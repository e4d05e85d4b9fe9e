import Glibc
import Logging
import NIOCore
import NIOHTTP1

/// Serves gRPC (PROTOCOL-HTTP2), and Connect unary calls, on one HTTP/2 connection through an
/// nghttp2 server session.
///
/// Bytes read from the socket go into the session; the session's callbacks build
/// `ServerCall`s and start their handlers; output is collected once per read burst
/// (`channelReadComplete`), or once per event-loop tick when handlers answer later, so many
/// streams answered together leave in one write. Everything runs on the channel's loop.
final class GRPCServerConnectionHandler: NGHTTP2ChannelHandler, ServerCallOwner {

    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let logger: Logger
    private var streams = StreamTable()
    /// nghttp2 reports a stream's headers and data one callback at a time; remembering the
    /// last stream spares a dictionary lookup on each.
    private var lastCall: ServerCall?
    private var draining = false

    init(router: RPCRouter, limits: RPCServer.Limits, logger: Logger) throws {
        self.router = router
        self.limits = limits
        self.logger = logger
        try super.init(role: .server)
    }

    // MARK: Channel events

    override func channelInactive(context: ChannelHandlerContext) {
        let open = streams.removeAll()
        for call in open where call.finalStatus == nil {
            call.closed = true
            call.cancel()
        }
        for call in open {
            call.releaseCallbacks()
            call.connection = nil
        }
        lastCall = nil
        super.channelInactive(context: context)
    }

    override func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RPCServer.Drain {
            draining = true
            session.submitGoAway()
            flush()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    override func connectionFailed(_ error: any Error) {
        logger.debug("closing connection: \(error)", metadata: peerMetadata)
    }

    private var peerMetadata: Logger.Metadata {
        ["peer": "\(context?.remoteAddress.map { "\($0)" } ?? "?")"]
    }

    // MARK: Output

    override func didFlush() {
        if (draining && streams.isEmpty) || (!session.wantsRead && !session.wantsWrite) {
            context?.close(promise: nil)
        }
    }

    /// A call queued a message or finished: get its bytes onto the wire.
    func callHasOutput(_ call: ServerCall) {
        guard !call.closed else { return }
        if let exchange = call.connect {
            // A unary answer goes out whole, once the call has finished.
            guard call.finalStatus != nil, !call.responseHeadersSent else { return }
            return answerConnect(call, exchange.response(to: call))
        }
        if let codec = call.connectStream { return connectStreamHasOutput(call, codec: codec) }
        do {
            if !call.responseHeadersSent {
                call.responseHeadersSent = true
                if let status = call.finalStatus, call.outbound.readableBytes == 0 {
                    // Nothing was sent: a trailers-only response, one HEADERS frame.
                    try session.submitResponse(
                        streamID: call.streamID, headers: Self.trailersOnly(status), hasBody: false)
                } else {
                    try session.submitResponse(
                        streamID: call.streamID, headers: Self.responseHeaders, hasBody: true)
                }
            } else {
                session.resumeData(streamID: call.streamID)
            }
        } catch {
            logger.error("cannot answer stream \(call.streamID): \(error)", metadata: peerMetadata)
            session.resetStream(streamID: call.streamID)
        }
        scheduleFlush()
    }

    // MARK: Session events

    override func sessionBeginHeaders(streamID: Int32) {
        guard streams[streamID] == nil, let context else { return }
        let call = ServerCall(
            streamID: streamID, connection: self, eventLoop: context.eventLoop,
            allocator: context.channel.allocator, maxMessageBytes: limits.maxMessageBytes)
        streams.insert(call)
        lastCall = call
    }

    private func call(_ streamID: Int32) -> ServerCall? {
        if let last = lastCall, last.streamID == streamID { return last }
        let found = streams[streamID]
        if found != nil { lastCall = found }
        return found
    }

    override func sessionHeader(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard let call = call(streamID), !call.requestHeadersDone else { return }
        switch name.count {
        case 5 where name.equals(":path"):
            // A query only comes with a Connect GET; gRPC paths have none.
            // memchr: Collection.firstIndex walks byte by byte (~170 instructions a request).
            let question = value.baseAddress.flatMap { base in
                memchr(base, Int32(UInt8(ascii: "?")), value.count).map { UnsafeRawPointer($0) - base }
            }
            let path = question.map { UnsafeRawBufferPointer(rebasing: value[..<$0]) } ?? value
            if let index = router.routeIndex(for: path) {
                call.route = router.route(at: index)
            } else {
                call.unknownPath = String(decoding: path, as: UTF8.self)
            }
            if let question { call.query = String(decoding: value[(question + 1)...], as: UTF8.self) }
        case 7 where name.equals(":method"):
            call.methodIsPost = value.equals("POST")
            call.methodIsGet = value.equals("GET")
        case 12 where name.equals("content-type"):
            if Self.isGRPCContentType(value) {
                call.contentType = .grpc
            } else if let codec = Self.connectCodec(value) {
                call.contentType = .connect(codec)
            } else if let codec = ConnectStreaming.codec(contentType: value) {
                call.contentType = .connectStream(codec)
            } else {
                call.contentType = .other(String(decoding: value, as: UTF8.self))
            }
        // Connect's; gRPC clients send them too (and grpc-encoding for what counts), so a call
        // already known to be gRPC skips the copy.
        case 15 where name.equals("accept-encoding") && !call.contentType.isGRPC:
            call.acceptEncoding = String(decoding: value, as: UTF8.self)
        case 16 where name.equals("content-encoding") && !call.contentType.isGRPC:
            call.contentEncoding = String(decoding: value, as: UTF8.self)
        case 18 where name.equals("connect-timeout-ms"):
            call.connectTimeout = String(decoding: value, as: UTF8.self)
        case 24 where name.equals("connect-protocol-version"):
            call.connectVersion = String(decoding: value, as: UTF8.self)
        case 24 where name.equals("connect-content-encoding"):
            call.contentEncoding = String(decoding: value, as: UTF8.self)
        case 23 where name.equals("connect-accept-encoding"):
            call.connectAcceptEncoding = String(decoding: value, as: UTF8.self)
        case 12 where name.equals("grpc-timeout"):
            // A malformed timeout is ignored rather than failing the call, as grpc-go does.
            call.timeoutNanos = GRPCTimeout.parse(value)
        case 13 where name.equals("grpc-encoding"):
            if !value.equals("identity") {
                call.unsupportedEncoding = String(decoding: value, as: UTF8.self)
            }
        default:
            break
        }
    }

    override func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let call = call(streamID) else { return }
        if !call.requestHeadersDone {
            call.requestHeadersDone = true
            startCall(call)
        }
        if endStream { requestEnded(call) }
    }

    override func sessionData(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        guard let call = call(streamID), call.finalStatus == nil, call.handlerStarted else { return }
        if call.connect != nil { return receivedConnectBody(bytes, on: call) }
        call.deframer.append(bytes)
        do {
            while let message = try call.deframer.next() {
                receivedMessage(message, on: call)
                if call.finalStatus != nil { return }
            }
        } catch {
            call.cancel()
            call.finishOnLoop(error)
        }
    }

    override func sessionDataEndStream(streamID: Int32) {
        guard let call = call(streamID) else { return }
        requestEnded(call)
    }

    override func sessionSentEndStream(streamID: Int32) {
        // The answer is out but the client is still sending (an early error, a deadline):
        // tell it to stop, so the stream closes now instead of when the client gets round
        // to ending it, and a graceful shutdown is not held up by it.
        if let call = call(streamID), !call.requestEnded {
            session.stopRequestBody(streamID: streamID)
        }
    }

    override func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let call = streams.remove(streamID) else { return }
        if lastCall === call { lastCall = nil }
        let unfinished = call.finalStatus == nil
        call.closed = true
        defer { call.connection = nil }
        if unfinished {
            // RST_STREAM from the client, or the connection is going away: stop the handler.
            call.cancel()
        } else {
            call.releaseCallbacks()
        }
        if draining && streams.isEmpty { scheduleFlush() }
    }

    override func sessionReadBody(streamID: Int32, into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
        guard let call = call(streamID) else { return .data(count: 0, end: .endStream) }
        let count = call.outbound.drain(into: buffer)
        if call.connectStream != nil {
            // Its end-stream message is the last thing queued; no trailers.
            if call.outbound.readableBytes == 0, call.endStreamQueued { return .data(count: count, end: .endStream) }
            return count == 0 ? .deferred : .data(count: count, end: nil)
        }
        if call.connect != nil {
            // A Connect unary body is complete when submitted, and has no trailers.
            return .data(count: count, end: call.outbound.readableBytes == 0 ? .endStream : nil)
        }
        if call.outbound.readableBytes == 0, let status = call.finalStatus {
            return .data(count: count, end: .trailers(Self.trailers(status)))
        }
        return count == 0 ? .deferred : .data(count: count, end: nil)
    }

    // MARK: Call lifecycle

    /// Checks the request headers and starts the handler, or answers the error the gRPC
    /// spec prescribes before any handler runs.
    private func startCall(_ call: ServerCall) {
        // A GET that is not gRPC (gRPC is POST only, and a gRPC client's GET gets its 405).
        if call.methodIsGet, let route = call.route, route.noSideEffects, !call.contentType.isGRPC {
            return startConnectGet(call)
        }
        guard call.methodIsPost else {
            // gRPC is POST only (PROTOCOL-HTTP2); RFC 9110 §15.5.6 asks for the allowed method.
            return refuseAfterRequest(call, status: "405", extra: [HTTPField("allow", "POST")])
        }
        switch call.contentType {
        case .grpc:
            break
        case .connect(let codec):
            startConnect(call, codec: codec)
            return
        case .connectStream(let codec):
            if let refusal = ConnectStreaming.configure(call, codec: codec) { return call.finishOnLoop(refusal) }
        case .missing, .other:
            return refuseAfterRequest(call, status: "415")
        }
        if let encoding = call.unsupportedEncoding {
            call.finalStatus = RPCStatus(
                .unimplemented,
                "grpc-encoding '\(encoding)' is not supported; this server accepts: identity")
            call.responseHeadersSent = true
            submit(
                call,
                headers: HeaderBlock(
                    Self.responseFields + Self.trailerFields(call.finalStatus ?? .ok)
                        + [HTTPField("grpc-accept-encoding", "identity")]))
            return
        }
        guard let route = call.route else {
            call.finishOnLoop(RPCStatus(.unimplemented, "unknown method \(call.unknownPath)"))
            return
        }
        call.armDeadline()
        call.handlerStarted = true
        if case .bidirectional(let handler) = route.handler {
            handler(call)
        }
    }

    // MARK: Connect streaming

    private func connectStreamHasOutput(_ call: ServerCall, codec: ConnectProtocol.Codec) {
        if let status = call.finalStatus, !call.endStreamQueued {
            call.endStreamQueued = true
            ConnectStreaming.endStream(status, into: &call.outbound)
        }
        do {
            if !call.responseHeadersSent {
                call.responseHeadersSent = true
                let headers =
                    call.compressesStream
                    ? HeaderBlock(
                        [HTTPField(":status", "200")]
                            + ConnectStreaming.responseHeaders(call, codec: codec).map { HTTPField($0.0, $0.1) })
                    : codec == .json ? Self.connectStreamJSONHeaders : Self.connectStreamProtoHeaders
                try session.submitResponse(streamID: call.streamID, headers: headers, hasBody: true)
            } else {
                session.resumeData(streamID: call.streamID)
            }
        } catch {
            session.resetStream(streamID: call.streamID)
        }
        scheduleFlush()
    }

    // MARK: Connect unary

    private func startConnect(_ call: ServerCall, codec: ConnectProtocol.Codec) {
        call.connect = ConnectUnary(codec: codec, acceptEncoding: call.acceptEncoding)
        // The body arrives in receivedConnectBody; even an unknown procedure is answered once
        // the request has ended (its body dropped as it comes): an answer mid-upload, and the
        // RST_STREAM that has to follow it, make curl 7.88 fail with "Stream error".
        call.handlerStarted = true
    }

    /// A Connect GET: the message comes in the query, and the request ends with its headers.
    private func startConnectGet(_ call: ServerCall) {
        switch ConnectProtocol.getRequest(query: Substring(call.query ?? "")) {
        case .success(let (codec, message, compression)):
            call.connect = ConnectUnary(codec: codec, acceptEncoding: call.acceptEncoding)
            call.contentEncoding = compression
            call.connectBody = context?.channel.allocator.buffer(bytes: message)
            call.handlerStarted = true
        case .failure(let status):
            call.connect = ConnectUnary(codec: .json)
            failConnect(call, status)
        }
    }

    private func receivedConnectBody(_ bytes: UnsafeRawBufferPointer, on call: ServerCall) {
        guard !call.methodIsGet, !call.connectBodyTooLarge, call.route != nil else { return }
        if (call.connectBody?.readableBytes ?? 0) + bytes.count > limits.maxMessageBytes {
            // Read on to the end of the request, keeping nothing, then refuse it.
            call.connectBodyTooLarge = true
            call.connectBody = nil
        } else if call.connectBody == nil {
            // Sized by the first chunk, which is usually the whole body.
            call.connectBody = call.allocator.buffer(bytes: bytes)
        } else {
            call.connectBody?.writeBytes(bytes)
        }
    }

    private func requestEndedConnect(_ call: ServerCall, _ exchange: ConnectUnary) {
        guard call.finalStatus == nil, let context else { return }
        guard let route = call.route else {
            // Connect: an unknown procedure is 404 with code unimplemented.
            return failConnect(call, RPCStatus(.unimplemented, "unknown method \(call.unknownPath)"), http: .notFound)
        }
        if call.connectBodyTooLarge {
            return failConnect(
                call, RPCStatus(.resourceExhausted, "request body larger than the \(limits.maxMessageBytes)-byte limit")
            )
        }
        let prepared = ConnectUnary.prepare(
            route: route, codec: exchange.codec, version: call.connectVersion, timeout: call.connectTimeout,
            encoding: call.contentEncoding, body: call.connectBody ?? context.channel.allocator.buffer(capacity: 0),
            maxBytes: limits.maxMessageBytes, allocator: context.channel.allocator)
        call.connectBody = nil
        switch prepared {
        case .failure(let refusal):
            failConnect(call, refusal.status, http: refusal.http)
        case .success(let (request, timeoutMs)):
            guard case .unary(let handler) = route.handler else { return }
            if let timeoutMs { call.timeoutNanos = timeoutMs * 1_000_000 }
            call.armDeadline()
            handler(request, call)
        }
    }

    /// Refuses a Connect call before its handler runs.
    private func failConnect(_ call: ServerCall, _ status: RPCStatus, http: HTTPResponseStatus? = nil) {
        call.finalStatus = status
        answerConnect(call, ConnectUnary.error(status, http: http, allocator: call.allocator))
    }

    /// Submits a finished Connect call's response: headers, then the body (its DATA frames end
    /// the stream, so no content-length is needed).
    private func answerConnect(_ call: ServerCall, _ response: ConnectUnary.Response) {
        call.responseHeadersSent = true
        call.outbound = response.body
        let headers: HeaderBlock
        switch (response.status, response.contentType, response.contentEncoding) {
        case (.ok, ConnectProtocol.Codec.proto.contentType, nil): headers = Self.connectProtoOK
        case (.ok, ConnectProtocol.Codec.json.contentType, nil): headers = Self.connectJSONOK
        default:
            var fields = [
                HTTPField(":status", String(response.status.code)), HTTPField("content-type", response.contentType),
            ]
            if let encoding = response.contentEncoding { fields.append(HTTPField("content-encoding", encoding)) }
            headers = HeaderBlock(fields)
        }
        do {
            try session.submitResponse(
                streamID: call.streamID, headers: headers, hasBody: response.body.readableBytes > 0)
        } catch {
            session.resetStream(streamID: call.streamID)
        }
        call.releaseCallbacks()
        scheduleFlush()
    }

    private func receivedMessage(_ message: ByteBuffer, on call: ServerCall) {
        guard let route = call.route else { return }
        var message = message
        if let codec = call.connectStream {
            switch ConnectStreaming.request(message, codec: codec, route: route, allocator: call.allocator) {
            case .success(let binary): message = binary
            case .failure(let status):
                call.cancel()
                call.finishOnLoop(status)
                return
            }
        }
        switch route.handler {
        case .bidirectional:
            call.deliver(message)
        case .unary, .serverStreaming:
            if call.pendingRequest != nil {
                call.cancel()
                call.finishOnLoop(RPCStatus(.invalidArgument, "\(route.path) takes one request message, got more"))
            } else {
                call.pendingRequest = message
            }
        }
    }

    private func requestEnded(_ call: ServerCall) {
        guard !call.requestEnded else { return }
        call.requestEnded = true
        if let refusal = call.httpRefusal {
            call.httpRefusal = nil
            return rejectHTTP(call, status: refusal.status, extra: refusal.extra)
        }
        if let exchange = call.connect { return requestEndedConnect(call, exchange) }
        guard call.handlerStarted, call.finalStatus == nil, let route = call.route else { return }
        if call.deframer.hasPartialMessage {
            call.cancel()
            call.finishOnLoop(
                RPCStatus(
                    .invalidArgument, "request ended inside a message: got \(call.deframer.partialMessageDescription)"))
            return
        }
        switch route.handler {
        case .bidirectional:
            call.deliverRequestEnd()
        case .unary(let handler), .serverStreaming(let handler):
            guard let request = call.pendingRequest else {
                call.finishOnLoop(RPCStatus(.invalidArgument, "\(route.path) requires a request message, got none"))
                return
            }
            call.pendingRequest = nil
            if let deadline = call.deadline, deadline <= .now() {
                call.finishOnLoop(RPCStatus(.deadlineExceeded, "deadline exceeded before the call started"))
                return
            }
            handler(request, call)
        }
    }

    /// A request that is neither gRPC nor Connect is refused at the HTTP level once it has
    /// ended, its body dropped meanwhile: an answer while the client still uploads, and the
    /// RST_STREAM that must follow it, make curl 7.88 fail with "Stream error" (measured: 12 of
    /// 400 `curl --data-binary` POSTs of text/plain) where it should print the status.
    private func refuseAfterRequest(_ call: ServerCall, status: String, extra: [HTTPField] = []) {
        call.httpRefusal = (status, extra)
    }

    private func rejectHTTP(_ call: ServerCall, status: String, extra: [HTTPField] = []) {
        call.finalStatus = RPCStatus(.internal, "rejected with HTTP \(status)")
        call.responseHeadersSent = true
        submit(call, headers: HeaderBlock([HTTPField(":status", status)] + extra))
    }

    private func submit(_ call: ServerCall, headers: HeaderBlock) {
        do {
            try session.submitResponse(streamID: call.streamID, headers: headers, hasBody: false)
        } catch {
            session.resetStream(streamID: call.streamID)
        }
        scheduleFlush()
    }

    // MARK: Header sets

    private static let responseFields = [
        HTTPField(":status", "200"), HTTPField("content-type", "application/grpc"),
    ]
    private static let responseHeaders = HeaderBlock(responseFields, permanent: true)
    private static let okTrailers = HeaderBlock([HTTPField("grpc-status", "0")], permanent: true)
    private static let connectStreamProtoHeaders = HeaderBlock(
        [HTTPField(":status", "200"), HTTPField("content-type", "application/connect+proto")], permanent: true)
    private static let connectStreamJSONHeaders = HeaderBlock(
        [HTTPField(":status", "200"), HTTPField("content-type", "application/connect+json")], permanent: true)
    private static let connectProtoOK = HeaderBlock(
        [HTTPField(":status", "200"), HTTPField("content-type", "application/proto")], permanent: true)
    private static let connectJSONOK = HeaderBlock(
        [HTTPField(":status", "200"), HTTPField("content-type", "application/json")], permanent: true)

    private static func trailerFields(_ status: RPCStatus) -> [HTTPField] {
        var fields = [HTTPField("grpc-status", String(status.code.rawValue))]
        if !status.message.isEmpty {
            fields.append(HTTPField("grpc-message", PercentEncoding.encode(status.message)))
        }
        return fields
    }

    private static func trailers(_ status: RPCStatus) -> HeaderBlock {
        if status.code == .ok && status.message.isEmpty { return okTrailers }
        return HeaderBlock(trailerFields(status))
    }

    private static func trailersOnly(_ status: RPCStatus) -> HeaderBlock {
        HeaderBlock(responseFields + trailerFields(status))
    }

    /// `application/grpc`, optionally followed by `+proto` or `;params`
    /// (gRPC PROTOCOL-HTTP2 "Content-Type").
    private static func isGRPCContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        guard value.hasPrefix("application/grpc") else { return false }
        let rest = UnsafeRawBufferPointer(rebasing: value.dropFirst(16))
        return rest.isEmpty || rest.equals("+proto") || rest.first == UInt8(ascii: ";")
    }

    /// Connect unary's `application/proto` or `application/json`, optionally with `;params`.
    private static func connectCodec(_ value: UnsafeRawBufferPointer) -> ConnectProtocol.Codec? {
        ConnectProtocol.codec(value, among: ["application/proto", "application/json"])
    }
}
