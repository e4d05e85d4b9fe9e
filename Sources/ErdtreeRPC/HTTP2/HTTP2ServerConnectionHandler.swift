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
final class HTTP2ServerConnectionHandler: NGHTTP2ChannelHandler, ServerStreamTransport {
    private let router: RPCRouter
    private let limits: RPCServer.Limits
    private let logger: Logger
    private let isServing: @Sendable () -> Bool
    private var streams = StreamTable()
    /// nghttp2 reports a stream's headers and data one callback at a time; remembering the
    /// last stream spares a table lookup on each.
    private var lastCall: ServerCall?
    private var draining = false

    /// - Parameter isServing: what `GET /healthz` reports (200 when true, else 503).
    init(
        router: RPCRouter, limits: RPCServer.Limits, logger: Logger,
        isServing: @escaping @Sendable () -> Bool = { true }
    ) throws {
        self.router = router
        self.limits = limits
        self.logger = logger
        self.isServing = isServing
        try super.init(role: .server)
    }

    var isNodeServing: Bool { isServing() }

    // MARK: Channel events

    override func channelInactive(context: ChannelHandlerContext) {
        for call in streams.removeAll() { call.close() }
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

    override func didFlush() {
        if (draining && streams.isEmpty) || (!session.wantsRead && !session.wantsWrite) {
            context?.close(promise: nil)
        }
    }

    // MARK: Session events

    override func sessionBeginHeaders(streamID: Int32) {
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

    override func sessionHeader(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        call(streamID)?.receiveHeader(name: name, value: value, router: router)
    }

    override func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let call = call(streamID) else { return }
        call.receiveHead()
        if endStream { call.receiveEnd() }
    }

    override func sessionData(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        call(streamID)?.receiveData(bytes)
    }

    override func sessionDataEndStream(streamID: Int32) {
        call(streamID)?.receiveEnd()
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
