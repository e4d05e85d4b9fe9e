import NIOCore

/// Moves bytes between a channel and its nghttp2 session; the server and client handlers
/// build on it and add what their role does with the session's events.
///
/// Input goes into the session as it is read. Output is collected once per read burst
/// (`channelReadComplete`), or on the next loop tick when something outside a read (a
/// handler answering later, a timer) produced it, so frames for many streams leave in one
/// write. Everything runs on the channel's event loop.
class NGHTTP2ChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let session: NGHTTP2Session
    private(set) var context: ChannelHandlerContext?
    private(set) var inReadBurst = false
    private var flushScheduled = false
    /// Reused between flushes: once the socket has taken the previous write, the storage is
    /// ours alone again and the next flush fills it without allocating.
    private var outputBuffer: ByteBuffer?

    init(role: NGHTTP2Session.Role, settings: NGHTTP2Session.Settings = .init()) throws {
        self.session = try NGHTTP2Session(role: role, settings: settings)
        session.attach(self)
    }

    // MARK: Session events, for the role to override
    //
    // Called synchronously from inside `session.receive(_:)` or `session.drainOutput(into:)`,
    // so always on the channel's event loop. Byte views are valid only during the call.
    // Class methods rather than a delegate protocol: nghttp2 reaches them through a borrowed
    // pointer to this handler, with no existential and no retain per callback.

    /// A HEADERS frame opens a request (server) or starts a response or trailers (client).
    func sessionBeginHeaders(streamID: Int32) {}

    /// One header field. Returning false refuses it: the stream is reset and the rest of its
    /// header block is skipped.
    func sessionHeader(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        true
    }

    /// A whole header block arrived; `endStream` when it also closed the peer's side.
    func sessionHeadersComplete(streamID: Int32, endStream: Bool) {}

    func sessionData(streamID: Int32, bytes: UnsafeRawBufferPointer) {}

    /// A DATA frame carried END_STREAM: the peer will send nothing more on this stream.
    func sessionDataEndStream(streamID: Int32) {}

    /// A DATA frame with no payload and no END_STREAM: legal, useless, and cheap for a peer
    /// to send by the million (CVE-2019-9518), so the role may count them.
    func sessionEmptyData() {}

    /// A SETTINGS frame arrived: the peer's own (`ack` false) or its acknowledgement of ours.
    func sessionSettings(ack: Bool) {}

    /// We sent GOAWAY with `errorCode` (0 for a graceful shutdown; nghttp2 sends others when
    /// the peer broke the protocol or tripped one of its limits).
    func sessionSentGoAway(errorCode: UInt32) {}

    /// We sent a frame with END_STREAM on this stream: our side of it is done.
    func sessionSentEndStream(streamID: Int32) {}

    /// The stream is gone; `errorCode` is non-zero when it was reset.
    func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {}

    /// nghttp2 wants up to `buffer.count` bytes of the stream's body.
    func sessionReadBody(streamID: Int32, into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
        .data(count: 0, end: .endStream)
    }

    // MARK: Hooks for the role

    /// The peer broke the protocol or the socket failed; the connection closes after this.
    func connectionFailed(_ error: any Error) {}

    /// After each flush: the place to close a connection that has nothing left to do.
    func didFlush() {}

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { flush() }
    }

    /// Lets go of the context: a connect that failed (refused, timed out) closes a channel that
    /// never became active, with no `channelInactive`, and a context kept past this would hold
    /// the pipeline, and so this handler and its session, in a cycle never freed (~30 KB for
    /// each redial of a master or an etcd endpoint that is down). Subclasses that count
    /// connections (the server's metrics) call it.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        flush()  // connection preface (client) and SETTINGS
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        inReadBurst = true
        do {
            try bytes.withUnsafeReadableBytes { try session.receive($0) }
        } catch {
            inReadBurst = false
            connectionFailed(error)
            flush()  // nghttp2 has queued a GOAWAY saying why
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        context.fireChannelInactive()
    }

    // Declared here so subclasses can override it: ChannelInboundHandler's witness table
    // is the base class's, and a method only a subclass declares would never be called.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connectionFailed(error)
        context.close(promise: nil)
    }

    // MARK: Output

    /// Collects every frame nghttp2 has ready and writes it in one flush.
    func flush() {
        guard let context else { return }
        var out = outputBuffer.take() ?? context.channel.allocator.buffer(capacity: 16 << 10)
        out.clear()
        do {
            try session.drainOutput(into: &out)
        } catch {
            connectionFailed(error)
            context.close(promise: nil)
            return
        }
        if out.readableBytes > 0 {
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
        outputBuffer = out
        didFlush()
    }

    /// Output produced outside a read burst is collected on the next loop tick, so a
    /// batch of answers costs one write.
    func scheduleFlush() {
        guard !inReadBurst, !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = loopBound.value
            handler.flushScheduled = false
            handler.flush()
        }
    }
}
