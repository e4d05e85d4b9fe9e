import Logging
import NIOCore
import NIOHTTP1

/// The server end of one HTTP/2 connection (prior knowledge, or upgraded from HTTP/1.1 with
/// `Upgrade: h2c`): one nghttp2 server session, one `ServerCall` per stream.
///
/// It only moves events: nghttp2's callbacks go to the stream's call, whose state machine
/// decides what the request is (gRPC, Connect unary, GET or streaming, a refusal) and what to
/// answer; this handler turns those answers into HEADERS, DATA and trailers. Output is
/// collected once per read burst (`channelReadComplete`), or once per event-loop tick when
/// handlers answer later, so many streams answered together leave in one write. Everything
/// runs on the channel's loop.
///
/// It also keeps the peer within the server's limits (`RPCServer.Limits`): the peer's windows
/// refill only as request bytes reach handlers (or are dropped), so what a connection makes
/// us hold is bounded by its windows and by the buffered-bytes caps, past which the stream
/// that went over is refused RESOURCE_EXHAUSTED; a header list over the advertised size, a
/// run of empty DATA frames, or a preface and SETTINGS not in by `RPCServer.HandshakeDeadline`
/// end the connection with GOAWAY, as do nghttp2's own flood and rapid-reset limits, and
/// each such connection is counted once in `RPCServer.Statistics`.
final class HTTP2ServerConnectionHandler: NGHTTP2ChannelHandler, ServerStreamTransport {
    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let statistics: RPCServer.Statistics
    private let logger: Logger
    private let isServing: @Sendable () -> Bool
    private var streams = StreamTable()
    /// nghttp2 reports a stream's headers and data one callback at a time; remembering the
    /// last stream spares a table lookup on each.
    private var lastCall: ServerCall?
    private var draining = false
    /// Request bytes held by this connection's calls, not yet given back to its window.
    private var bufferedRequestBytes = 0
    /// What this connection has added to the server-wide total: `bufferedRequestBytes` rounded
    /// down to `reportingGranularity`, so calls with smaller messages (nearly all) never touch
    /// the atomic shared by every event loop.
    private var reportedRequestBytes = 0
    /// Bytes of the header block being received (RFC 9113 §6.5.2: names, values, 32 each).
    /// Header blocks never interleave, so one counter serves every stream.
    private var headerListBytes = 0
    private var emptyDataFrames = 0
    /// The handshake `RPCServer.HandshakeDeadline` waits for: the client's preface and its
    /// SETTINGS. Not our SETTINGS' ACK: a client that sends but never reads holds no more than
    /// its flow-control windows let us queue, and a stalled slave is dropped by replication's
    /// own send-buffer check, which must see it first.
    private var peerSettingsReceived = false
    private var countedAsAbuse = false
    private var loggedMemoryRefusal = false

    /// Empty DATA frames without END_STREAM a connection may send in its life. No client
    /// needs them; nghttp2 1.52 does not count them itself.
    static let maxEmptyDataFrames = 1000
    static let reportingGranularity = 64 << 10

    /// - Parameter isServing: what `GET /healthz` reports (200 when true, else 503).
    init(
        router: RPCRouter, limits: RPCServer.Limits, statistics: RPCServer.Statistics, logger: Logger,
        isServing: @escaping @Sendable () -> Bool = { true }
    ) throws {
        self.router = router
        self.limits = limits
        self.statistics = statistics
        self.logger = logger
        self.isServing = isServing
        try super.init(role: .server, settings: Self.settings(for: limits))
    }

    static func settings(for limits: RPCServer.Limits) -> NGHTTP2Session.Settings {
        var settings = NGHTTP2Session.Settings()
        settings.maxConcurrentStreams = UInt32(clamping: limits.maxConcurrentStreams)
        settings.maxHeaderListSize = UInt32(clamping: limits.maxHeaderListBytes)
        settings.refillsWindowsOnConsume = true
        // nghttp2 sends WINDOW_UPDATE once half a window is consumed, so a stream stalls when
        // more than half its window is an unfinished message: half must hold the largest
        // message, or a small message followed by a large one would never arrive. The same
        // holds for the connection, whose cap trips (freeing bytes) before half is held.
        let largestMessage = limits.maxMessageBytes + GRPCMessageDeframer.prefixBytes
        settings.initialWindowSize = UInt32(clamping: min(2 * largestMessage, Int(Int32.max)))
        settings.connectionWindowSize = Int32(clamping: min(2 * limits.maxBufferedBytesPerConnection, Int(Int32.max)))
        return settings
    }

    var isNodeServing: Bool { isServing() }
    var observer: (any RPCObserver)? { router.observer }

    // MARK: Channel events

    override func handlerAdded(context: ChannelHandlerContext) {
        router.observer?.connectionOpened(.http2)
        super.handlerAdded(context: context)
    }

    override func handlerRemoved(context: ChannelHandlerContext) {
        router.observer?.connectionClosed(.http2)
        super.handlerRemoved(context: context)
    }

    override func channelInactive(context: ChannelHandlerContext) {
        for call in streams.removeAll() { call.close() }
        lastCall = nil
        bufferedRequestBytes = 0
        if reportedRequestBytes != 0 {
            _ = statistics.addBuffered(-reportedRequestBytes)
            reportedRequestBytes = 0
        }
        super.channelInactive(context: context)
    }

    override func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RPCServer.Drain {
            draining = true
            session.submitGoAway()
            flush()
        } else if event is RPCServer.HandshakeDeadline {
            guard !peerSettingsReceived else { return }
            closeForAbuse(.settingsTimeout, "it did not finish its preface and SETTINGS in time")
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    override func connectionFailed(_ error: any Error) {
        guard let error = error as? HTTP2SessionError, error.isPeerViolation else {
            logger.debug("closing connection: \(error)", metadata: peerMetadata)
            return
        }
        // A protocol error already has nghttp2's GOAWAY queued; a flood has none, and gets ours.
        closeForAbuse(.enhanceYourCalm, "\(error)")
    }

    override func sessionSentGoAway(errorCode: UInt32) {
        // Ours are graceful (code 0); any other is nghttp2 ending the session over the peer's
        // conduct (a protocol error, a flood, rapid reset) or our own `closeForAbuse`.
        if errorCode != 0 { countAsAbuse("sent GOAWAY with error code \(errorCode)") }
    }

    /// Ends the session with GOAWAY(`reason`) and counts the connection as closed for abuse.
    private func closeForAbuse(_ reason: NGHTTP2Session.Termination, _ why: String) {
        countAsAbuse(why)
        session.terminate(reason)
        scheduleFlush()
    }

    private func countAsAbuse(_ why: String) {
        guard !countedAsAbuse else { return }
        countedAsAbuse = true
        statistics.connectionClosedForAbuse()
        logger.notice("closing an HTTP/2 connection: \(why)", metadata: peerMetadata)
    }

    private var peerMetadata: Logger.Metadata {
        ["peer": "\(context?.remoteAddress.map { "\($0)" } ?? "?")"]
    }

    override func didFlush() {
        if (draining && streams.isEmpty) || (!session.wantsRead && !session.wantsWrite) {
            context?.close(promise: nil)
        }
    }

    // MARK: Session events

    override func sessionBeginHeaders(streamID: Int32) {
        headerListBytes = 0
        guard streams[streamID] == nil, let context else { return }
        let call = ServerCall(
            streamID: streamID, transport: self, kind: .http2, eventLoop: context.eventLoop,
            allocator: context.channel.allocator, maxMessageBytes: limits.maxMessageBytes)
        streams.insert(call)
        lastCall = call
    }

    @inline(__always)
    private func call(_ streamID: Int32) -> ServerCall? {
        if let last = lastCall, last.streamID == streamID { return last }
        let found = streams[streamID]
        if found != nil { lastCall = found }
        return found
    }

    override func sessionHeader(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        // nghttp2 advertises SETTINGS_MAX_HEADER_LIST_SIZE but does not enforce it on what it
        // receives; bounded only by its CONTINUATION limit, a header block could reach a MB.
        headerListBytes &+= name.count &+ value.count &+ 32
        guard headerListBytes <= limits.maxHeaderListBytes else {
            if !countedAsAbuse {
                closeForAbuse(
                    .enhanceYourCalm,
                    "its header list exceeds the advertised \(limits.maxHeaderListBytes) bytes")
            }
            return false
        }
        call(streamID)?.receiveHeader(name: name, value: value, router: router)
        return true
    }

    override func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let call = call(streamID) else { return }
        call.receiveHead()
        if endStream {
            call.receiveEnd()
            settle(call, received: 0)
        }
    }

    override func sessionData(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        guard let call = call(streamID) else {
            session.consume(streamID: streamID, bytes: bytes.count)
            return
        }
        call.receiveData(bytes)
        settle(call, received: bytes.count)
    }

    override func sessionDataEndStream(streamID: Int32) {
        guard let call = call(streamID) else { return }
        call.receiveEnd()
        settle(call, received: 0)
    }

    override func sessionEmptyData() {
        emptyDataFrames += 1
        if emptyDataFrames > Self.maxEmptyDataFrames, !countedAsAbuse {
            closeForAbuse(.enhanceYourCalm, "it sent more than \(Self.maxEmptyDataFrames) empty DATA frames")
        }
    }

    override func sessionSettings(ack: Bool) {
        if !ack { peerSettingsReceived = true }
    }

    // MARK: Buffered request bytes

    /// After `call` took `received` bytes (or its request ended): gives the peer's windows back
    /// whatever the call no longer holds, and refuses the call if what the connection or the
    /// server holds is now over its cap. What stays held keeps the windows shut, which is
    /// what bounds an attacker who opens streams and never finishes their messages.
    @inline(__always)
    private func settle(_ call: ServerCall, received: Int) {
        let held = call.bufferedRequestBytes
        let before = call.unconsumedRequestBytes
        let released = before + received - held
        if released > 0 { session.consume(streamID: call.streamID, bytes: released) }
        guard held != before else { return }
        call.unconsumedRequestBytes = held
        let serverTotal = hold(held - before)
        if held > before,
            bufferedRequestBytes > limits.maxBufferedBytesPerConnection
                || (serverTotal ?? 0) > limits.maxBufferedBytes
        {
            refuseForMemory(call)
        }
    }

    /// Adds `delta` to what the connection holds.
    /// - Returns: the server-wide total, when this connection's share of it moved.
    @inline(__always)
    private func hold(_ delta: Int) -> Int? {
        bufferedRequestBytes += delta
        let report = bufferedRequestBytes & ~(Self.reportingGranularity - 1)
        guard report != reportedRequestBytes else { return nil }
        defer { reportedRequestBytes = report }
        return statistics.addBuffered(report - reportedRequestBytes)
    }

    private func refuseForMemory(_ call: ServerCall) {
        let (scope, limit, actual) =
            bufferedRequestBytes > limits.maxBufferedBytesPerConnection
            ? ("this connection", limits.maxBufferedBytesPerConnection, bufferedRequestBytes)
            : ("the server", limits.maxBufferedBytes, statistics.bufferedRequestBytes)
        let message =
            "\(scope) holds too many bytes of unfinished requests (max: \(limit), actual: \(actual)); retry later"
        statistics.requestRefusedForMemory()
        if !loggedMemoryRefusal {
            loggedMemoryRefusal = true
            logger.notice("refusing requests on a connection: \(message)", metadata: peerMetadata)
        }
        call.abandonRequest(RPCStatus(.resourceExhausted, message))
        settle(call, received: 0)
    }

    /// A closing stream's held bytes go back to the connection window; its own no longer matters.
    private func release(_ call: ServerCall) {
        let held = call.unconsumedRequestBytes
        guard held > 0 else { return }
        call.unconsumedRequestBytes = 0
        session.consumeConnection(bytes: held)
        _ = hold(-held)
    }

    override func sessionSentEndStream(streamID: Int32) {
        // The answer is out but the client is still sending (an early error, a deadline):
        // tell it to stop, so the stream closes now instead of when the client gets round
        // to ending it, and a graceful shutdown is not held up by it.
        if let call = call(streamID), call.requestIsOpen {
            session.stopRequestBody(streamID: streamID)
        }
    }

    override func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let call = streams.remove(streamID) else { return }
        if lastCall === call { lastCall = nil }
        // RST_STREAM from the client, or the connection is going away: a handler still
        // running is cancelled.
        call.close()
        release(call)
        if draining && streams.isEmpty { scheduleFlush() }
    }

    override func sessionReadBody(streamID: Int32, into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
        guard let call = call(streamID) else { return .data(count: 0, end: .endStream) }
        switch call.readBody(into: buffer) {
        case .deferred: return .deferred
        case .data(let count, nil): return .data(count: count, end: nil)
        case .data(let count, .endOfBody?): return .data(count: count, end: .endStream)
        case .data(let count, .trailers(let status)?): return .data(count: count, end: .trailers(Self.trailers(status)))
        }
    }

    // MARK: Answers

    func writeResponseHead(_ head: ResponseHead, hasBody: Bool, for call: ServerCall) {
        do {
            try session.submitResponse(streamID: call.streamID, headers: Self.headerBlock(head), hasBody: hasBody)
        } catch {
            logger.error("cannot answer stream \(call.streamID): \(error)", metadata: peerMetadata)
            session.resetStream(streamID: call.streamID)
        }
        scheduleFlush()
    }

    func resumeResponse(for call: ServerCall) {
        session.resumeData(streamID: call.streamID)
        scheduleFlush()
    }

    // MARK: Header blocks

    private static func headerBlock(_ head: ResponseHead) -> HeaderBlock {
        switch head {
        case .grpc:
            return grpcHeaders
        case .grpcTrailersOnly(let status, let advertiseEncodings):
            let accept = advertiseEncodings ? [HTTPField("grpc-accept-encoding", "identity")] : []
            return HeaderBlock(grpcFields + trailerFields(status) + accept)
        case .connectStream(let options):
            if !options.compressesResponses {
                return options.codec == .json ? connectStreamJSONHeaders : connectStreamProtoHeaders
            }
            return HeaderBlock([HTTPField(":status", "200")] + options.responseHeaders.map { HTTPField($0.0, $0.1) })
        case .whole(let whole):
            if whole.status == .ok, whole.contentEncoding == nil, whole.allow == nil, whole.metadata.isEmpty {
                if whole.contentType == ConnectProtocol.Codec.proto.contentType { return connectProtoOK }
                if whole.contentType == ConnectProtocol.Codec.json.contentType { return connectJSONOK }
            }
            var fields = [HTTPField(":status", String(whole.status.code))]
            if let contentType = whole.contentType { fields.append(HTTPField("content-type", contentType)) }
            if let encoding = whole.contentEncoding { fields.append(HTTPField("content-encoding", encoding)) }
            if let allow = whole.allow { fields.append(HTTPField("allow", allow)) }
            for (name, value) in whole.metadata.sorted(by: { $0.key < $1.key }) {
                fields.append(HTTPField(name, value))
            }
            return HeaderBlock(fields)
        }
    }

    private static let grpcFields = [
        HTTPField(":status", "200"), HTTPField("content-type", "application/grpc"),
    ]
    private static let grpcHeaders = HeaderBlock(grpcFields, permanent: true)
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
        for (name, value) in status.metadata.sorted(by: { $0.key < $1.key }) {
            fields.append(HTTPField(name, value))
        }
        return fields
    }

    private static func trailers(_ status: RPCStatus) -> HeaderBlock {
        if status.code == .ok && status.message.isEmpty { return okTrailers }
        return HeaderBlock(trailerFields(status))
    }
}

extension HTTP2ServerConnectionHandler {
    /// Serves the HTTP/1.1 request that asked for `Upgrade: h2c` as stream 1 (already opened
    /// by `NGHTTP2Session.upgrade`), as if it had come in HEADERS and DATA frames (RFC 7540
    /// §3.2).
    func serveUpgradedRequest(_ head: HTTPRequestHead, body: ByteBuffer) {
        sessionBeginHeaders(streamID: 1)
        guard let call = call(1) else { return }
        // Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2).
        let fields = head.headers.lazy.filter { !H2CUpgrade.hopByHop.contains($0.name.lowercased()) }
        call.receiveHead(RequestHead(method: head.method.rawValue, uri: head.uri, fields: fields, router: router))
        body.withUnsafeReadableBytes { if !$0.isEmpty { call.receiveData($0) } }
        call.receiveEnd()
    }
}
