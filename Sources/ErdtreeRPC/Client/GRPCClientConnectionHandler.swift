import NIOCore

/// The client end of one HTTP/2 connection: opens gRPC calls as nghttp2 client streams.
///
/// The client side of `HTTP2ServerConnectionHandler`, speaking gRPC only: the CLI uses it, and
/// slaves dial their master with it for `Replicate`. Everything runs on the channel's event loop.
final class GRPCClientConnectionHandler: NGHTTP2ChannelHandler {

    private let authority: String
    /// `https` on a TLS connection, `http` on cleartext (RFC 9113 §8.3.1).
    private let scheme: String
    /// Sent with every call after the protocol's own fields.
    private let metadata: [HTTPField]
    private var streams: [Int32: ClientCall] = [:]
    private var closedStatus: RPCStatus?

    init(authority: String, scheme: String = "http", metadata: [HTTPField] = []) throws {
        self.authority = authority
        self.scheme = scheme
        self.metadata = metadata
        try super.init(role: .client)
    }

    override func channelInactive(context: ChannelHandlerContext) {
        failAll(RPCStatus(.unavailable, "connection to \(authority) closed"))
        super.channelInactive(context: context)
    }

    override func connectionFailed(_ error: any Error) {
        failAll(RPCStatus(.unavailable, "connection to \(authority) failed: \(error)"))
    }

    // MARK: Calls

    /// Opens the stream for `call`; its headers and any queued messages leave on the next flush.
    func start(_ call: ClientCall, timeoutNanos: Int64?) {
        if let closedStatus {
            call.complete(closedStatus)
            return
        }
        var headers = [
            HTTPField(":method", "POST"), HTTPField(":scheme", scheme),
            HTTPField(":path", call.path), HTTPField(":authority", authority),
            HTTPField("content-type", "application/grpc"), HTTPField("te", "trailers"),
        ]
        headers += metadata
        if let timeoutNanos {
            headers.append(HTTPField("grpc-timeout", GRPCTimeout.format(nanoseconds: timeoutNanos)))
            // The task runs on this handler's event loop, which is what the loop-bound box checks.
            let handler = NIOLoopBound(self, eventLoop: call.eventLoop)
            call.deadlineTask = call.eventLoop.scheduleTask(in: .nanoseconds(timeoutNanos)) { [weak call] in
                guard let call else { return }
                handler.value.cancel(
                    call,
                    status: RPCStatus(
                        .deadlineExceeded,
                        "deadline exceeded after \(GRPCTimeout.describe(nanos: timeoutNanos))"))
            }
        }
        do {
            call.connection = self
            call.streamID = try session.submitRequest(headers: HeaderBlock(headers))
            streams[call.streamID] = call
        } catch {
            call.complete(RPCStatus(.unavailable, "cannot open a stream to \(authority): \(error)"))
        }
        scheduleFlush()
    }

    func callHasOutput(_ call: ClientCall) {
        guard streams[call.streamID] != nil else { return }
        session.resumeData(streamID: call.streamID)
        scheduleFlush()
    }

    func cancel(_ call: ClientCall, status: RPCStatus) {
        guard !call.finished else { return }
        if streams.removeValue(forKey: call.streamID) != nil {
            session.resetStream(streamID: call.streamID)
            scheduleFlush()
        }
        call.complete(status)
    }

    private func failAll(_ status: RPCStatus) {
        closedStatus = closedStatus ?? status
        let open = streams.values
        streams.removeAll()
        for call in open { call.complete(status) }
    }

    // MARK: Session events

    override func sessionHeader(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        guard let call = streams[streamID] else { return true }
        switch name.count {
        case 7 where name.equals(":status"):
            call.httpStatus = Int(String(decoding: value, as: UTF8.self))
        case 11 where name.equals("grpc-status"):
            call.grpcStatus = Int(String(decoding: value, as: UTF8.self))
        case 12 where name.equals("grpc-message"):
            call.grpcMessage = PercentEncoding.decode(String(decoding: value, as: UTF8.self))
        default:
            // Any other field is the status's metadata (a slave's erdtree-master).
            let field = String(decoding: name, as: UTF8.self)
            if !field.hasPrefix(":"), !field.hasPrefix("grpc-"), field != "content-type" {
                call.metadata[field] = String(decoding: value, as: UTF8.self)
            }
        }
        return true
    }

    override func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        if endStream { responseEnded(streamID: streamID) }
    }

    override func sessionData(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        guard let call = streams[streamID], !call.finished else { return }
        call.deframer.append(bytes)
        do {
            while let message = try call.deframer.next() {
                call.deliver(message)
                if call.finished { return }
            }
        } catch {
            cancel(call, status: error)
        }
    }

    override func sessionDataEndStream(streamID: Int32) {
        responseEnded(streamID: streamID)
    }

    /// The server's END_STREAM ends the call even while we are still sending: a server may
    /// finish a streaming call early, and its trailers are the last word. Dropping the call
    /// makes `sessionReadBody` end our side too, so nghttp2 closes the stream.
    private func responseEnded(streamID: Int32) {
        guard let call = streams.removeValue(forKey: streamID) else { return }
        if !call.sendClosed {
            session.resumeData(streamID: streamID)
            scheduleFlush()
        }
        call.complete(call.statusFromResponse(resetCode: 0))
    }

    override func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let call = streams.removeValue(forKey: streamID) else { return }
        call.complete(call.statusFromResponse(resetCode: errorCode))
    }

    override func sessionReadBody(streamID: Int32, into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
        guard let call = streams[streamID] else { return .data(count: 0, end: .endStream) }
        let count = call.outbound.drain(into: buffer)
        if call.outbound.readableBytes == 0 && call.sendClosed {
            return .data(count: count, end: .endStream)
        }
        return count == 0 ? .deferred : .data(count: count, end: nil)
    }
}
