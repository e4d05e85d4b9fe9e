import Dispatch
import NIOCore

/// The connection a call answers through: one nghttp2 stream, or one HTTP/1.1 exchange. It
/// turns the response into its own wire format; the call decides what the response is.
/// Called on the event loop.
protocol ServerStreamTransport: AnyObject {
    /// The response starts; with `hasBody`, its body is queued on the call (HTTP/2 pulls it
    /// with `readBody(into:)`, HTTP/1.1 takes it with `takeBody()`).
    func writeResponseHead(_ head: ResponseHead, hasBody: Bool, for call: ServerCall)
    /// More of the body, or its end, is queued on the call.
    func resumeResponse(for call: ServerCall)
    /// What `/healthz` reports now.
    var isNodeServing: Bool { get }
    /// Who counts calls and serves `/metrics`; nil: nobody.
    var observer: (any RPCObserver)? { get }
}

/// One call on the server: what a handler sees of a request, and how it answers.
///
/// Handlers may call `respond`, `send` and `finish` from any thread; each hops to the
/// connection's event loop unless already on it, so a handler that answers inline (a `Get`
/// from memory) costs no hop. Everything else here belongs to that event loop, which is why
/// the type is `@unchecked Sendable`: the loop confinement is the synchronisation. The
/// protocol rules live in `ServerStreamStateMachine`; this class feeds it the transport's and
/// the handler's events and carries out the actions it returns.
public final class ServerCall: @unchecked Sendable {
    /// The method's `:path`, e.g. `/erdtree.v1.KVStore/Get`.
    public var path: String { machine.head.path }
    public let eventLoop: any EventLoop
    public var allocator: ByteBufferAllocator { machine.allocator }
    /// When the client stops waiting (`grpc-timeout`, `connect-timeout-ms`), if it said.
    public private(set) var deadline: NIODeadline?

    /// The HTTP/2 stream id (0 over HTTP/1.1).
    let streamID: Int32
    private(set) var machine: ServerStreamStateMachine
    /// Cleared when the stream closes, which breaks the transport → call → transport cycle.
    private var transport: (any ServerStreamTransport)?
    private var deadlineTask: Scheduled<Void>?
    private var messageCallback: ((ByteBuffer) -> Void)?
    private var requestEndCallback: (() -> Void)?
    private var cancelCallback: (() -> Void)?
    /// Where `GET /metrics` builds its text; serial, so concurrent scrapes queue rather than
    /// take several threads.
    private static let scrapes = DispatchQueue(label: "erdtree.metrics-scrape")
    /// Request bytes this call held when the HTTP/2 transport last looked, and so has not given
    /// back to the peer's flow-control windows. The transport's bookkeeping; event loop only.
    var unconsumedRequestBytes = 0
    /// Where the call's outcome is counted once it has one, and when its head was complete (for
    /// its duration); nil when unobserved or counted. Unchecked: the event loop confines it (as
    /// it does the whole call), and a runtime exclusivity check costs ~76 instructions an access
    /// (callgrind).
    @exclusivity(unchecked) private var observed:
        (recorder: any RPCMethodRecorder, startedAt: UInt64, protocol: RPCCallProtocol)?

    init(
        streamID: Int32, transport: any ServerStreamTransport, kind: ServerTransport, eventLoop: any EventLoop,
        allocator: ByteBufferAllocator, maxMessageBytes: Int
    ) {
        self.streamID = streamID
        self.transport = transport
        self.eventLoop = eventLoop
        self.machine = ServerStreamStateMachine(transport: kind, maxMessageBytes: maxMessageBytes, allocator: allocator)
    }

    // MARK: Answering (any thread)

    /// Answers a unary call: the response message, then status OK.
    public func respond(_ message: consuming ByteBuffer) {
        if eventLoop.inEventLoop {
            respondOnLoop(message)
        } else {
            let sendable = copy message
            eventLoop.execute { self.respondOnLoop(sendable) }
        }
    }

    /// Sends one response message on a streaming call.
    public func send(_ message: ByteBuffer) {
        if eventLoop.inEventLoop {
            sendOnLoop(message)
        } else {
            eventLoop.execute { self.sendOnLoop(message) }
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
        return machine.outbound.readableBytes
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
        return machine.isFinished
    }

    // MARK: Transport side (event loop)

    @inline(__always)
    func receiveHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, router: RPCRouter) {
        machine.receiveHeader(name: name, value: value, router: router)
    }

    /// The request head is complete: its fields came through `receiveHeader` (HTTP/2).
    func receiveHead() {
        let action = machine.receiveHead()
        observe()
        perform(action)
    }

    /// The whole request head, as the transport parsed it (HTTP/1.1, an upgraded request).
    func receiveHead(_ parsed: RequestHead) {
        let action = machine.receiveHead(parsed)
        observe()
        perform(action)
    }

    /// Once the route is known: where the call will be counted, in which protocol, and from when
    /// it is timed. Everything read from the machine here, so that counting the call later reads
    /// it only for its status (each read of `machine` is a runtime exclusivity check).
    private func observe() {
        // Field by field: a copy of the whole head would retain all it holds.
        guard let recorder = machine.head.route?.recorder ?? transport?.observer?.unroutedRecorder else { return }
        let kind: RPCCallProtocol =
            machine.head.contentType.isGRPC ? .grpc : machine.head.method == .get ? .connectGet : .connect
        observed = (recorder, NIODeadline.now().uptimeNanoseconds, kind)
    }

    /// Counts the call once it has ended with a status, in one place for both transports. Answers
    /// at the HTTP level (`/healthz`, `/metrics`, a request that is neither gRPC nor Connect) have
    /// none and are not calls.
    private func recordOutcome(_ code: RPCStatus.Code?) {
        guard let (recorder, startedAt, kind) = observed, let code else { return }
        observed = nil
        let elapsed = NIODeadline.now().uptimeNanoseconds &- startedAt
        recorder.finished(code: code, protocol: kind, nanoseconds: Int64(truncatingIfNeeded: elapsed))
    }

    @inline(__always)
    func receiveData(_ bytes: UnsafeRawBufferPointer) {
        machine.receiveData(bytes)
        while let action = machine.nextRequestMessage() {
            perform(action)
        }
    }

    /// Request bytes received and not yet handed to the handler.
    @inline(__always)
    var bufferedRequestBytes: Int { machine.bufferedRequestBytes }

    /// Drops what the call holds of its request and, unless it has answered, ends it with
    /// `status`: the server holds more request bytes than its caps allow.
    func abandonRequest(_ status: RPCStatus) {
        perform(machine.abandonRequest(status))
    }

    @inline(__always)
    func receiveEnd() {
        perform(machine.receiveEnd())
    }

    /// Whether the client may still send: an answer that went out before the request ended
    /// asks it to stop (HTTP/2's RST_STREAM(NO_ERROR)).
    @inline(__always)
    var requestIsOpen: Bool { !machine.requestEnded }

    @inline(__always)
    func readBody(into buffer: UnsafeMutableRawBufferPointer) -> ResponseBodyChunk {
        machine.readBody(into: buffer)
    }

    func takeBody() -> (bytes: ByteBuffer, ended: Bool) {
        machine.takeBody()
    }

    /// The stream closed (reset by the peer, the connection went away, or the exchange is
    /// done): a handler still due to answer is cancelled, and the call lets go of everything.
    func close() {
        if machine.close() {
            // The client went away before an answer: the call ends CANCELLED.
            recordOutcome(.cancelled)
            cancel()
        }
        releaseCallbacks()
        transport = nil
    }

    // MARK: Carrying out actions

    private func perform(_ action: consuming ServerStreamStateMachine.Action) {
        switch consume action {
        case .none:
            break
        case .armDeadline(let nanos):
            armDeadline(nanos: nanos)
        case .start(let start, let deadlineNanos):
            if let deadlineNanos { armDeadline(nanos: deadlineNanos) }
            switch start {
            case .bidirectional(let handler):
                handler(self)
            case .unary(let handler, let request):
                if let deadline, deadline <= .now() {
                    return finishOnLoop(RPCStatus(.deadlineExceeded, "deadline exceeded before the call started"))
                }
                handler(request, self)
            }
        case .deliver(let message):
            messageCallback?(message)
        case .deliverEnd:
            requestEndCallback?()
        case .fail(let status):
            cancel()
            finishOnLoop(status)
        case .writeHead(let head, let hasBody):
            if observed != nil { recordOutcome(machine.state == .finished ? machine.finalStatus?.code : nil) }
            transport?.writeResponseHead(head, hasBody: hasBody, for: self)
        case .resume:
            if observed != nil { recordOutcome(machine.state == .finished ? machine.finalStatus?.code : nil) }
            transport?.resumeResponse(for: self)
        case .probeHealth:
            perform(machine.answerHealthz(serving: transport?.isNodeServing ?? false))
        case .exposeMetrics:
            let observer = transport?.observer
            if let refusal = machine.refuseMetrics(observer) { return perform(refusal) }
            guard let observer else { return }
            // Built off the event loop: a scrape reads every family (~1 ms with a million keys),
            // and the loop goes on serving calls meanwhile.
            Self.scrapes.async {
                let body = observer.exposition()
                self.eventLoop.execute { self.perform(self.machine.answerMetrics(body: body)) }
            }
        }
    }

    private func sendOnLoop(_ message: consuming ByteBuffer) {
        perform(machine.send(message))
    }

    private func respondOnLoop(_ message: consuming ByteBuffer) {
        guard !machine.isFinished else { return }
        let action = machine.respond(message)
        finished(action)
    }

    func finishOnLoop(_ status: RPCStatus) {
        guard !machine.isFinished else { return }
        let action = machine.finish(status)
        finished(action)
    }

    private func finished(_ action: consuming ServerStreamStateMachine.Action) {
        deadlineTask?.cancel()
        deadlineTask = nil
        perform(action)
        // The handler is done with the call: drop its closures now so the cycles they may
        // hold on the call break here, not at stream close.
        releaseCallbacks()
    }

    /// Ends the call with DEADLINE_EXCEEDED when its timeout passes before it finishes.
    private func armDeadline(nanos: Int64) {
        let now = NIODeadline.now()
        let (sum, overflow) = now.uptimeNanoseconds.addingReportingOverflow(UInt64(max(nanos, 0)))
        let deadline: NIODeadline = overflow ? .distantFuture : .uptimeNanoseconds(sum)
        self.deadline = deadline
        deadlineTask = eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self, !self.machine.isFinished else { return }
            self.cancel()
            self.finishOnLoop(
                RPCStatus(.deadlineExceeded, "deadline exceeded after \(GRPCTimeout.describe(nanos: nanos))"))
        }
    }

    /// The handler will not be answered: its `onCancel` runs, and its callbacks are dropped.
    private func cancel() {
        deadlineTask?.cancel()
        deadlineTask = nil
        let callback = cancelCallback
        releaseCallbacks()
        callback?()
    }

    private func releaseCallbacks() {
        messageCallback = nil
        requestEndCallback = nil
        cancelCallback = nil
    }
}
