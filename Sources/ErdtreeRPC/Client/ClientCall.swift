import NIOCore

/// One gRPC call from the client side: request messages out, response messages and a final
/// status in.
///
/// `send`, `closeSend` and `cancel` may be called from any thread; they hop to the
/// connection's event loop. The callbacks given at creation run on that loop, and
/// `onFinish` runs exactly once.
public final class ClientCall: @unchecked Sendable {
    public let path: String
    public let eventLoop: any EventLoop

    var streamID: Int32 = -1
    weak var connection: GRPCClientConnectionHandler?
    var outbound: ByteBuffer
    var sendClosed = false
    var deframer: GRPCMessageDeframer
    var httpStatus: Int?
    var grpcStatus: Int?
    var grpcMessage: String?
    /// Response header and trailer fields other than gRPC's own: the status's metadata.
    var metadata: [String: String] = [:]
    var finished = false
    var deadlineTask: Scheduled<Void>?

    private var messageCallback: ((ByteBuffer) -> Void)?
    private var finishCallback: ((RPCStatus) -> Void)?

    init(
        path: String, eventLoop: any EventLoop, allocator: ByteBufferAllocator, maxMessageBytes: Int,
        onMessage: @escaping (ByteBuffer) -> Void, onFinish: @escaping (RPCStatus) -> Void
    ) {
        self.path = path
        self.eventLoop = eventLoop
        self.outbound = allocator.buffer(capacity: 0)
        self.deframer = GRPCMessageDeframer(maxMessageBytes: maxMessageBytes, allocator: allocator)
        self.messageCallback = onMessage
        self.finishCallback = onFinish
    }

    /// Queues one request message.
    public func send(_ message: ByteBuffer) {
        if eventLoop.inEventLoop {
            sendOnLoop(message)
        } else {
            eventLoop.execute { self.sendOnLoop(message) }
        }
    }

    /// Half-closes: the server sees the end of the request stream after queued messages.
    public func closeSend() {
        if eventLoop.inEventLoop {
            closeSendOnLoop()
        } else {
            eventLoop.execute { self.closeSendOnLoop() }
        }
    }

    /// Resets the stream; `onFinish` reports CANCELLED.
    public func cancel() {
        if eventLoop.inEventLoop {
            connection?.cancel(self, status: RPCStatus(.cancelled, "cancelled by the client"))
        } else {
            eventLoop.execute {
                self.connection?.cancel(self, status: RPCStatus(.cancelled, "cancelled by the client"))
            }
        }
    }

    private func sendOnLoop(_ message: ByteBuffer) {
        guard !sendClosed, !finished else { return }
        GRPCMessageFramer.write(message, into: &outbound)
        connection?.callHasOutput(self)
    }

    private func closeSendOnLoop() {
        guard !sendClosed, !finished else { return }
        sendClosed = true
        connection?.callHasOutput(self)
    }

    func deliver(_ message: ByteBuffer) {
        messageCallback?(message)
    }

    func complete(_ status: RPCStatus) {
        guard !finished else { return }
        finished = true
        deadlineTask?.cancel()
        deadlineTask = nil
        let callback = finishCallback
        messageCallback = nil
        finishCallback = nil
        callback?(status)
    }

    /// The status a finished stream reports, from its trailers or, failing those, from
    /// the HTTP status (gRPC's "HTTP to gRPC Status Code Mapping").
    func statusFromResponse(resetCode: UInt32) -> RPCStatus {
        if let code = grpcStatus {
            return RPCStatus(RPCStatus.Code(rawValue: code), grpcMessage ?? "", metadata: metadata)
        }
        if let http = httpStatus, http != 200 {
            let code: RPCStatus.Code =
                switch http {
                case 400: .internal
                case 401: .unauthenticated
                case 403: .permissionDenied
                case 404: .unimplemented
                case 429, 502, 503, 504: .unavailable
                default: .unknown
                }
            return RPCStatus(code, "server answered HTTP \(http)")
        }
        if resetCode != 0 {
            return RPCStatus(.unavailable, "stream reset by the server (HTTP/2 error \(resetCode))")
        }
        return RPCStatus(.internal, "response ended without a grpc-status")
    }
}
