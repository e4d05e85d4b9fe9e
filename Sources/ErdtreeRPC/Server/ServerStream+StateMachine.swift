import NIOCore
import NIOHTTP1

/// The life of one call on the server, shared by the HTTP/2 and HTTP/1.1 transports: what the
/// request has shown, whether the handler runs, what the response has sent.
///
/// Events come in from the transport (`receiveHead`, `receiveData`, `receiveEnd`, `close`) and
/// from the handler (`send`, `finish`); each returns the `Action` its owner (`ServerCall`)
/// carries out, as NIO's `HTTPServerPipelineHandler` and grpc-swift's `GRPCStreamStateMachine`
/// do. Nothing here touches a channel, a clock or a handler, so every transition can be tested
/// on its own. Event loop only (it lives in the call, which belongs to one loop).
struct ServerStreamStateMachine {
    /// Where the call is. Trivially copyable on purpose: it is checked on every header field
    /// and body chunk, and an enum with payloads costs a copy and a destroy per check (measured:
    /// ~600 instructions a gRPC call); what a state needs is in `refusal` and `finalStatus`.
    enum State: Equatable {
        /// The request head is still arriving (HTTP/2 header fields).
        case receivingHead
        /// Refused before any handler ran (`refusal`); answered once the request has ended.
        case refusing
        /// The request is coming in and the handler waits for it: a unary or server-streaming
        /// call for its one message, a Connect unary call for its whole body.
        case collecting
        /// The handler runs.
        case running
        /// The response is decided (`finalStatus`); it may still be leaving.
        case finished
        /// The stream is gone: reset, connection closed, or the exchange done.
        case closed
    }

    /// How the call's messages are framed, once its plan is known.
    enum Framing: Equatable {
        case undecided
        case grpc
        case connectUnary(ConnectUnary)
        case connectStream(ConnectStreaming.Options)
    }

    /// How request bytes are taken in.
    enum Inbound: Equatable {
        /// Enveloped messages, split as they arrive (gRPC; Connect streaming over HTTP/2).
        case deframing
        /// The whole body, up to the message limit, then read on to its end keeping nothing
        /// (Connect unary; Connect streaming over HTTP/1.1, whose one envelope is split once in).
        case collecting(tooLarge: Bool)
        /// The request is complete already (a Connect GET: its message came in the query).
        case complete
        /// Nothing more is wanted: bytes are dropped.
        case dropping
    }

    /// What the response has sent.
    enum ResponsePhase: Equatable {
        case idle
        case streaming
        /// Everything is queued, its end included.
        case complete
    }

    /// What the call's owner must do after an event.
    enum Action {
        case none
        /// The call's deadline (`grpc-timeout`) starts now, before the handler does.
        case armDeadline(nanos: Int64)
        /// Run the handler, arming the deadline first when one is given.
        case start(Start, deadlineNanos: Int64?)
        /// Hand the handler a request message (bidirectional calls).
        case deliver(ByteBuffer)
        /// Tell the handler the client sent its last message.
        case deliverEnd
        /// Cancel the handler, if it runs, and end the call with `status`.
        case fail(RPCStatus)
        case writeHead(ResponseHead, hasBody: Bool)
        /// More of the response body, or its end, is queued.
        case resume
        /// Ask the transport whether the node serves, and answer with `answerHealthz(serving:)`.
        case probeHealth
        /// Answer `GET /metrics` with `answerMetrics(_:)`, given the transport's observer.
        case exposeMetrics
    }

    enum Start {
        case bidirectional(@Sendable (ServerCall) -> Void)
        case unary(@Sendable (ByteBuffer, ServerCall) -> Void, request: ByteBuffer)
    }

    let transport: ServerTransport
    let allocator: ByteBufferAllocator
    private(set) var head = RequestHead()
    private(set) var state = State.receivingHead
    /// While `refusing`: the answer the request gets once it has ended.
    private var refusal: Refusal?
    /// Once `finished`: the call's status, nil for an answer at the HTTP level (a refusal of a
    /// request that is neither gRPC nor Connect).
    private(set) var finalStatus: RPCStatus?
    private(set) var framing = Framing.undecided
    private(set) var inbound = Inbound.dropping
    private(set) var response = ResponsePhase.idle
    private(set) var requestEnded = false
    private var deframer: GRPCMessageDeframer
    /// A collected body; for unary and server-streaming methods, their one request message.
    private var body: ByteBuffer?
    private var pendingRequest: ByteBuffer?
    /// Response bytes not yet taken by the transport.
    private(set) var outbound: ByteBuffer

    init(transport: ServerTransport, maxMessageBytes: Int, allocator: ByteBufferAllocator) {
        self.transport = transport
        self.allocator = allocator
        self.deframer = GRPCMessageDeframer(maxMessageBytes: maxMessageBytes, allocator: allocator)
        self.outbound = allocator.buffer(capacity: 0)
    }

    var maxMessageBytes: Int { deframer.maxMessageBytes }

    /// Request bytes received and not yet handed to a handler: a message arriving in part, a
    /// unary call's message waiting for the request to end, a Connect body being collected.
    /// The HTTP/2 transport refills the peer's flow-control windows by what this gives back.
    var bufferedRequestBytes: Int {
        var held = deframer.buffer.readableBytes + (pendingRequest?.readableBytes ?? 0)
        if case .collecting = inbound { held += body?.readableBytes ?? 0 }
        return held
    }

    var isFinished: Bool {
        switch state {
        case .finished, .closed: true
        default: false
        }
    }

    // MARK: Request events

    /// One header field of the request head; fields after the head (HTTP/2 trailers) are ignored.
    @inline(__always)
    mutating func receiveHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, router: RPCRouter) {
        guard case .receivingHead = state else { return }
        head.add(name: name, value: value, router: router)
    }

    /// The whole head, parsed by the transport (HTTP/1.1, or a request upgraded to HTTP/2).
    mutating func receiveHead(_ parsed: RequestHead) -> Action {
        guard case .receivingHead = state else { return .none }
        head = parsed
        return receiveHead()
    }

    /// The head is complete: its fields came through `receiveHeader` (HTTP/2).
    mutating func receiveHead() -> Action {
        guard case .receivingHead = state else { return .none }
        switch CallPlan.plan(head, transport: transport) {
        case .refuse(let refusal, let early):
            inbound = .dropping
            if early && transport.answersEarly { return answer(refusal) }
            state = .refusing
            self.refusal = refusal
            return .none
        case .grpc(let route):
            framing = .grpc
            inbound = .deframing
            return begin(route, deadlineNanos: head.grpcTimeoutNanos)
        case .connectStream(let options, let route):
            framing = .connectStream(options)
            deframer.gzipAccepted = options.inflatesRequests
            inbound = transport == .http2 ? .deframing : .collecting(tooLarge: false)
            return begin(route, deadlineNanos: options.timeoutNanos)
        case .connectUnary(let exchange, _):
            framing = .connectUnary(exchange)
            inbound = .collecting(tooLarge: false)
            state = .collecting
            return .none
        case .healthz:
            inbound = .dropping
            return .probeHealth
        case .metrics:
            inbound = .dropping
            return .exposeMetrics
        case .connectGet(let exchange, _, let message):
            framing = .connectUnary(exchange)
            inbound = .complete
            body = allocator.buffer(bytes: message)
            state = .collecting
            return .none
        }
    }

    private mutating func begin(_ route: RPCRouter.Route, deadlineNanos: Int64?) -> Action {
        if case .bidirectional(let handler) = route.handler {
            state = .running
            return .start(.bidirectional(handler), deadlineNanos: deadlineNanos)
        }
        state = .collecting
        return deadlineNanos.map { .armDeadline(nanos: $0) } ?? .none
    }

    /// Request body bytes; messages are taken out with `nextRequestMessage()`.
    mutating func receiveData(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .collecting, .running: break
        default: return
        }
        switch inbound {
        case .deframing:
            deframer.append(bytes)
        case .collecting(let tooLarge):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + bytes.count > maxMessageBytes {
                // Read on to the end of the request, keeping nothing, then refuse it.
                inbound = .collecting(tooLarge: true)
                body = nil
            } else if body == nil {
                // Sized by the first chunk, which is usually the whole body.
                body = allocator.buffer(bytes: bytes)
            } else {
                body?.writeBytes(bytes)
            }
        case .complete, .dropping:
            return
        }
    }

    /// The next thing a request message asks for; nil when no whole message is buffered.
    /// Call it until it returns nil (a message held for a unary handler returns `.none`).
    mutating func nextRequestMessage() -> Action? {
        guard case .deframing = inbound else { return nil }
        switch state {
        case .collecting, .running: break
        default: return nil
        }
        let message: ByteBuffer
        do throws(RPCStatus) {
            guard let next = try deframer.next() else { return nil }
            message = next
        } catch {
            return fail(error)
        }
        return received(message)
    }

    private mutating func received(_ message: ByteBuffer) -> Action {
        guard let route = head.route else { return .none }
        var message = message
        if case .connectStream(let options) = framing {
            switch options.request(message, route: route, allocator: allocator) {
            case .success(let binary): message = binary
            case .failure(let status): return fail(status)
            }
        }
        switch route.handler {
        case .bidirectional:
            return .deliver(message)
        case .unary, .serverStreaming:
            guard pendingRequest == nil else {
                return fail(RPCStatus(.invalidArgument, "\(route.path) takes one request message, got more"))
            }
            pendingRequest = message
            return .none
        }
    }

    /// The client sent its last byte.
    mutating func receiveEnd() -> Action {
        guard !requestEnded else { return .none }
        requestEnded = true
        switch state {
        case .refusing:
            guard let refusal else { return .none }
            self.refusal = nil
            return answer(refusal)
        case .collecting, .running: break
        default: return .none
        }
        switch inbound {
        case .collecting(let tooLarge):
            if tooLarge {
                return fail(RPCStatus(.resourceExhausted, "request body larger than the \(maxMessageBytes)-byte limit"))
            }
            return bodyComplete()
        case .complete:
            return bodyComplete()
        case .deframing:
            return deframedRequestEnded()
        case .dropping:
            return .none
        }
    }

    /// A collected body is all in: a Connect unary request, or the one envelope of a Connect
    /// stream over HTTP/1.1.
    private mutating func bodyComplete() -> Action {
        let collected = body ?? allocator.buffer(capacity: 0)
        body = nil
        guard let route = head.route else { return .none }
        switch framing {
        case .connectUnary(let exchange):
            inbound = .dropping
            switch exchange.request(from: collected, route: route, maxBytes: maxMessageBytes, allocator: allocator) {
            case .failure(let refusal):
                return answer(refusal)
            case .success(let (request, timeoutNanos)):
                guard case .unary(let handler) = route.handler else { return .none }
                state = .running
                return .start(.unary(handler, request: request), deadlineNanos: timeoutNanos)
            }
        case .connectStream:
            inbound = .deframing
            collected.withUnsafeReadableBytes { deframer.append($0) }
            while let action = nextRequestMessage() {
                if case .fail = action { return action }
            }
            return deframedRequestEnded()
        case .grpc, .undecided:
            return .none
        }
    }

    private mutating func deframedRequestEnded() -> Action {
        guard let route = head.route else { return .none }
        if deframer.hasPartialMessage {
            return fail(
                RPCStatus(.invalidArgument, "request ended inside a message: got \(deframer.partialMessageDescription)")
            )
        }
        switch route.handler {
        case .bidirectional:
            return .deliverEnd
        case .unary(let handler), .serverStreaming(let handler):
            guard case .collecting = state else { return .none }
            guard let request = pendingRequest else {
                return fail(RPCStatus(.invalidArgument, "\(route.path) requires a request message, got none"))
            }
            pendingRequest = nil
            state = .running
            return .start(.unary(handler, request: request), deadlineNanos: nil)
        }
    }

    /// Drops whatever else the request sends and has the call end with `status`.
    private mutating func fail(_ status: RPCStatus) -> Action {
        stopTakingRequest()
        return .fail(status)
    }

    /// The server holds more request bytes than its caps allow: this call lets go of its own
    /// and, unless it has already answered, ends with `status`.
    mutating func abandonRequest(_ status: RPCStatus) -> Action {
        switch state {
        case .collecting, .running: return fail(status)
        default:
            stopTakingRequest()
            return .none
        }
    }

    /// No more request bytes are wanted: what is buffered goes too, so a call that has
    /// answered holds no memory for a client that keeps its request open.
    private mutating func stopTakingRequest() {
        inbound = .dropping
        deframer.discard()
        body = nil
        pendingRequest = nil
    }

    /// Answers a refusal in its protocol's format; the handler never runs.
    private mutating func answer(_ refusal: Refusal) -> Action {
        stopTakingRequest()
        response = .complete
        switch refusal {
        case .grpc(let status, let advertiseEncodings):
            finish(as: status)
            return .writeHead(.grpcTrailersOnly(status, advertiseEncodings: advertiseEncodings), hasBody: false)
        case .connectStream(let status, let options):
            finish(as: status)
            framing = .connectStream(options)
            ConnectStreaming.endStream(status, into: &outbound)
            return .writeHead(.connectStream(options), hasBody: true)
        case .connect(let status, let http, let allow, let closesConnection):
            finish(as: status)
            let error = ConnectUnary.error(status, http: http, allocator: allocator)
            outbound = error.body
            let head = WholeResponse(
                status: error.status, contentType: error.contentType, allow: allow, closesConnection: closesConnection,
                metadata: status.metadata)
            return .writeHead(.whole(head), hasBody: true)
        case .http(let status, let allow):
            finish(as: nil)
            return .writeHead(.whole(WholeResponse(status: status, allow: allow)), hasBody: false)
        }
    }

    /// The body HTTP/1.1's `/healthz` answers, so a probe reads the same over either.
    mutating func answerHealthz(serving: Bool) -> Action {
        answerText(
            serving ? .ok : .serviceUnavailable, allocator.buffer(string: serving ? "SERVING\n" : "NOT_SERVING\n"))
    }

    /// `GET /metrics`: the observer's exposition, unless it wants a token the request lacks
    /// (DESIGN §11: any known token will do, whatever its role).
    mutating func answerMetrics(_ observer: (any RPCObserver)?) -> Action {
        if let refusal = refuseMetrics(observer) { return refusal }
        return answerMetrics(body: observer?.exposition() ?? [])
    }

    /// The answer to `GET /metrics` when it is refused (no observer, or a token it wants is
    /// missing); nil when the exposition may be built.
    mutating func refuseMetrics(_ observer: (any RPCObserver)?) -> Action? {
        guard let observer else { return answerText(.notFound, allocator.buffer(string: "no metrics here\n")) }
        if observer.metricsNeedToken {
            guard case .known = head.credential else {
                return answerText(
                    .unauthorized,
                    allocator.buffer(string: "/metrics needs a bearer token (authorization: Bearer <token>)\n"),
                    metadata: ["www-authenticate": "Bearer"])
            }
        }
        return nil
    }

    /// The exposition, built elsewhere; nothing if the stream closed while it was being built.
    mutating func answerMetrics(body: [UInt8]) -> Action {
        guard case .receivingHead = state else { return .none }
        return answerText(
            .ok, allocator.buffer(bytes: body), contentType: "text/plain; version=0.0.4; charset=utf-8",
            metadata: ["cache-control": "no-store"])
    }

    /// A whole plain-text answer at the HTTP level (no RPC status).
    private mutating func answerText(
        _ status: HTTPResponseStatus, _ body: ByteBuffer, contentType: String = "text/plain; charset=utf-8",
        metadata: [String: String] = [:]
    ) -> Action {
        stopTakingRequest()
        response = .complete
        finish(as: nil)
        outbound = body
        let head = WholeResponse(status: status, contentType: contentType, metadata: metadata)
        return .writeHead(.whole(head), hasBody: true)
    }

    private mutating func finish(as status: RPCStatus?) {
        state = .finished
        finalStatus = status
    }

    // MARK: Handler events

    /// A response message from the handler.
    mutating func send(_ message: consuming ByteBuffer) -> Action {
        guard case .running = state else { return .none }
        if let failed = append(message) { return failed }
        switch framing {
        case .grpc: return started(.grpc)
        case .connectStream(let options): return started(.connectStream(options))
        case .connectUnary, .undecided: return .none  // a unary answer goes out whole, at the end
        }
    }

    /// A unary call's answer: its message, then OK, in one event (one response head, no
    /// resume in between).
    mutating func respond(_ message: consuming ByteBuffer) -> Action {
        guard case .running = state else { return .none }
        return append(message) ?? finish(.ok)
    }

    /// Queues a response message; when it cannot be written (as JSON), the call ends with
    /// that error instead, and the action for that is returned.
    private mutating func append(_ message: consuming ByteBuffer) -> Action? {
        guard case .connectStream(let options) = framing else {
            // Connect unary answers with the bare message; it strips the prefix then.
            GRPCMessageFramer.write(message, into: &outbound)
            return nil
        }
        do throws(RPCStatus) {
            try options.write(message, route: head.route, into: &outbound, allocator: allocator)
            return nil
        } catch {
            return finish(error)
        }
    }

    private mutating func started(_ head: ResponseHead) -> Action {
        guard response == .idle else { return .resume }
        response = .streaming
        return .writeHead(head, hasBody: true)
    }

    /// The call ends with `status` (from the handler, a failure, or its deadline); later
    /// answers are ignored.
    mutating func finish(_ status: RPCStatus) -> Action {
        switch state {
        case .collecting, .running: break
        default: return .none
        }
        finish(as: status)
        stopTakingRequest()
        let wasIdle = response == .idle
        response = .complete
        switch framing {
        case .grpc:
            guard wasIdle else { return .resume }
            // Nothing was sent: a trailers-only response, one HEADERS frame.
            if outbound.readableBytes == 0 {
                return .writeHead(.grpcTrailersOnly(status, advertiseEncodings: false), hasBody: false)
            }
            return .writeHead(.grpc, hasBody: true)
        case .connectStream(let options):
            ConnectStreaming.endStream(status, into: &outbound)
            return wasIdle ? .writeHead(.connectStream(options), hasBody: true) : .resume
        case .connectUnary(let exchange):
            let answer = exchange.response(
                to: status, framedMessage: outbound, route: head.route, allocator: allocator)
            outbound = answer.body
            let head = WholeResponse(
                status: answer.status, contentType: answer.contentType, contentEncoding: answer.contentEncoding,
                metadata: status.metadata)
            return .writeHead(.whole(head), hasBody: answer.body.readableBytes > 0)
        case .undecided:
            return .none
        }
    }

    // MARK: Transport events

    /// HTTP/2 pulls the next piece of the body into one of its DATA frames.
    mutating func readBody(into buffer: UnsafeMutableRawBufferPointer) -> ResponseBodyChunk {
        let count = outbound.drain(into: buffer)
        guard outbound.readableBytes == 0, response == .complete else {
            return count == 0 ? .deferred : .data(count: count, end: nil)
        }
        if case .grpc = framing, let finalStatus {
            return .data(count: count, end: .trailers(finalStatus))
        }
        return .data(count: count, end: .endOfBody)
    }

    /// HTTP/1.1 takes everything queued; `ended` once the response is complete.
    mutating func takeBody() -> (bytes: ByteBuffer, ended: Bool) {
        let bytes = outbound
        outbound = allocator.buffer(capacity: 0)
        return (bytes, response == .complete)
    }

    /// The stream is gone. Returns whether the handler was still due to answer (it is then
    /// cancelled).
    mutating func close() -> Bool {
        let unfinished: Bool
        switch state {
        case .collecting, .running: unfinished = true
        default: unfinished = false
        }
        state = .closed
        stopTakingRequest()
        return unfinished
    }
}
