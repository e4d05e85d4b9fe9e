import NIOCore

/// The transport a call answers through: the gRPC connection (one nghttp2 stream per call)
/// or a Connect exchange over HTTP/1.1. Called on the event loop whenever the call queued a
/// message or finished.
protocol ServerCallOwner: AnyObject {
    func callHasOutput(_ call: ServerCall)
}

/// One gRPC call on the server: what a handler sees of a request stream, and how it answers.
///
/// Handlers may call `respond`, `send` and `finish` from any thread; each hops to the
/// connection's event loop unless already on it, so a handler that answers inline (a `Get`
/// from memory) costs no hop. Everything else here (callbacks, stream state) belongs to
/// that event loop, which is why the type is `@unchecked Sendable`: the loop confinement
/// is the synchronisation.
public final class ServerCall: @unchecked Sendable {
    /// The method's `:path`, e.g. `/erdtree.v1.KVStore/Get`.
    public var path: String { route?.path ?? unknownPath }
    public let eventLoop: any EventLoop
    public let allocator: ByteBufferAllocator
    /// When the client stops waiting (from `grpc-timeout`), if it said.
    public private(set) var deadline: NIODeadline?

    let streamID: Int32
    /// Cleared when the stream closes, which breaks the connection → call → connection cycle.
    var connection: (any ServerCallOwner)?

    // Request state, filled in by the connection while headers arrive.
    var route: RPCRouter.Route?
    var unknownPath = ""
    var methodIsPost = false
    var methodIsGet = false
    /// What follows `?` in `:path` (a Connect GET's message), if anything.
    var query: String?
    var contentType: ContentTypeCheck = .missing
    var timeoutNanos: Int64?
    var unsupportedEncoding: String?
    var requestHeadersDone = false
    var requestEnded = false
    var deframer: GRPCMessageDeframer
    /// For unary and server-streaming methods: the single request message.
    var pendingRequest: ByteBuffer?
    var handlerStarted = false
    /// Not gRPC or Connect: the HTTP status it gets once the request has ended.
    var httpRefusal: (status: String, extra: [HTTPField])?
    /// A Connect unary call on HTTP/2 (set once its headers are checked): its raw body so far,
    /// and the Connect request headers.
    var connect: ConnectUnary?
    var connectBody: ByteBuffer?
    var connectBodyTooLarge = false
    var connectVersion: String?
    var connectTimeout: String?
    var contentEncoding: String?
    var acceptEncoding: String?
    /// A Connect streaming call (`application/connect+proto|json`): gRPC's 5-byte envelopes,
    /// but JSON messages for that codec and an end-stream message instead of trailers.
    var connectStream: ConnectProtocol.Codec?
    var connectAcceptEncoding: String?
    /// The client's `connect-accept-encoding` offers gzip: large streamed answers go compressed.
    var compressesStream = false
    var endStreamQueued = false

    // Response state.
    var outbound: ByteBuffer
    var responseHeadersSent = false
    var finalStatus: RPCStatus?
    var closed = false
    var deadlineTask: Scheduled<Void>?

    private var messageCallback: ((ByteBuffer) -> Void)?
    private var requestEndCallback: (() -> Void)?
    private var cancelCallback: (() -> Void)?

    enum ContentTypeCheck {
        case missing
        case grpc
        case connect(ConnectProtocol.Codec)
        case connectStream(ConnectProtocol.Codec)
        case other(String)

        var isGRPC: Bool {
            if case .grpc = self { return true }
            return false
        }
    }

    init(
        streamID: Int32, connection: any ServerCallOwner, eventLoop: any EventLoop,
        allocator: ByteBufferAllocator, maxMessageBytes: Int
    ) {
        self.streamID = streamID
        self.connection = connection
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.deframer = GRPCMessageDeframer(maxMessageBytes: maxMessageBytes, allocator: allocator)
        self.outbound = allocator.buffer(capacity: 0)
    }

    // MARK: Answering (any thread)

    /// Answers a unary call: the response message, then status OK.
    public func respond(_ message: consuming ByteBuffer) {
        if eventLoop.inEventLoop {
            appendMessage(message)
            finishOnLoop(.ok)
        } else {
            let sendable = copy message
            eventLoop.execute {
                self.appendMessage(sendable)
                self.finishOnLoop(.ok)
            }
        }
    }

    /// Sends one response message on a streaming call.
    public func send(_ message: ByteBuffer) {
        if eventLoop.inEventLoop {
            appendMessage(message)
        } else {
            eventLoop.execute { self.appendMessage(message) }
        }
    }

    /// Ends the call with `status`; later answers are ignored.
    public func finish(_ status: RPCStatus) {
        if eventLoop.inEventLoop {
            finishOnLoop(status)
        } else {
            eventLoop.execute { self.finishOnLoop(status) }
        }
    }

    /// Bytes queued for this call but not yet taken by the transport: a streaming handler
    /// checks it to bound what a slow reader makes us buffer. Event loop only.
    public var pendingOutboundBytes: Int {
        eventLoop.preconditionInEventLoop()
        return outbound.readableBytes
    }

    // MARK: Callbacks (install from the handler, on the event loop)

    /// Called on the event loop with each request message of a bidirectional call.
    public func onMessage(_ callback: @escaping (ByteBuffer) -> Void) {
        eventLoop.preconditionInEventLoop()
        messageCallback = callback
    }

    /// Called on the event loop when the client has sent its last message.
    public func onRequestEnd(_ callback: @escaping () -> Void) {
        eventLoop.preconditionInEventLoop()
        requestEndCallback = callback
    }

    /// Called on the event loop when the call ends before the handler finished it: the
    /// client reset the stream, the deadline passed, or the connection closed.
    public func onCancel(_ callback: @escaping () -> Void) {
        eventLoop.preconditionInEventLoop()
        cancelCallback = callback
    }

    /// True once the call has ended, by the handler or by the client. Event loop only.
    public var isFinished: Bool {
        eventLoop.preconditionInEventLoop()
        return finalStatus != nil || closed
    }

    // MARK: Connection side (event loop)

    func setDeadline(fromNowNanos nanos: Int64) {
        let now = NIODeadline.now()
        let (sum, overflow) = now.uptimeNanoseconds.addingReportingOverflow(UInt64(max(nanos, 0)))
        deadline = overflow ? .distantFuture : .uptimeNanoseconds(sum)
    }

    /// Ends the call with DEADLINE_EXCEEDED when its timeout (`grpc-timeout`, or Connect's
    /// `connect-timeout-ms`) passes before it finishes.
    func armDeadline() {
        guard let timeout = timeoutNanos else { return }
        setDeadline(fromNowNanos: timeout)
        guard let deadline else { return }
        deadlineTask = eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self, self.finalStatus == nil, !self.closed else { return }
            self.cancel()
            self.finishOnLoop(
                RPCStatus(.deadlineExceeded, "deadline exceeded after \(GRPCTimeout.describe(nanos: timeout))"))
        }
    }

    func deliver(_ message: ByteBuffer) {
        messageCallback?(message)
    }

    func deliverRequestEnd() {
        requestEndCallback?()
    }

    /// The stream closed (reset by the peer, or the connection went away) or the deadline
    /// passed before the handler finished.
    func cancel() {
        deadlineTask?.cancel()
        deadlineTask = nil
        let callback = cancelCallback
        releaseCallbacks()
        callback?()
    }

    func releaseCallbacks() {
        messageCallback = nil
        requestEndCallback = nil
        cancelCallback = nil
    }

    func finishOnLoop(_ status: RPCStatus) {
        guard finalStatus == nil, !closed else { return }
        finalStatus = status
        deadlineTask?.cancel()
        deadlineTask = nil
        connection?.callHasOutput(self)
        // The handler is done with the call: drop its closures now so the cycles they
        // may hold on the call break here, not at stream close.
        releaseCallbacks()
    }

    private func appendMessage(_ message: consuming ByteBuffer) {
        guard finalStatus == nil, !closed else { return }
        if let codec = connectStream {
            guard
                var envelope = codec == .json
                    ? ConnectStreaming.json(of: message, route: route, allocator: allocator) : message
            else {
                return finishOnLoop(RPCStatus(.internal, "cannot write the response message as JSON"))
            }
            var flags: UInt8 = 0
            if compressesStream, envelope.readableBytes >= ConnectUnary.compressMinBytes {
                envelope = Gzip.compress(envelope, allocator: allocator)
                flags = ConnectStreaming.compressedFlag
            }
            GRPCMessageFramer.write(envelope, into: &outbound, flags: flags)
        } else {
            GRPCMessageFramer.write(message, into: &outbound)
        }
        connection?.callHasOutput(self)
    }
}
