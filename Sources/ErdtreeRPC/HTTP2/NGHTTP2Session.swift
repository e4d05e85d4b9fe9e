internal import CNGHTTP2
import NIOCore

/// One header field to send. Short names and values stay inline in `String`,
/// so building the common response headers does not allocate per field.
public struct HTTPField: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Header fields laid out once as an `nghttp2_nv` array, ready to submit.
///
/// The answer to every successful call uses the same two blocks (`:status 200` +
/// content-type, then `grpc-status: 0`); building them once and telling nghttp2 not to copy
/// them (`permanent`) takes header work off the per-request path. Immutable after init.
final class HeaderBlock: @unchecked Sendable {
    fileprivate let nameValues: UnsafeMutablePointer<nghttp2_nv>
    fileprivate let count: Int
    private let bytes: UnsafeMutablePointer<UInt8>

    /// - Parameter permanent: the block outlives every session that sends it (a static),
    ///   so nghttp2 may point at it instead of copying.
    init(_ fields: [HTTPField], permanent: Bool = false) {
        let total = fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
        bytes = .allocate(capacity: max(total, 1))
        nameValues = .allocate(capacity: max(fields.count, 1))
        count = fields.count
        let flags =
            permanent
            ? UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue)
            : UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
        var offset = 0
        for (i, field) in fields.enumerated() {
            let name = bytes + offset
            offset += Self.copyUTF8(field.name, to: name)
            let value = bytes + offset
            offset += Self.copyUTF8(field.value, to: value)
            (nameValues + i).initialize(
                to: nghttp2_nv(
                    name: name, value: value, namelen: field.name.utf8.count,
                    valuelen: field.value.utf8.count, flags: flags))
        }
    }

    deinit {
        nameValues.deallocate()
        bytes.deallocate()
    }

    private static func copyUTF8(_ string: String, to destination: UnsafeMutablePointer<UInt8>) -> Int {
        var string = string
        return string.withUTF8 { utf8 in
            guard let src = utf8.baseAddress else { return 0 }
            destination.update(from: src, count: utf8.count)
            return utf8.count
        }
    }
}

/// What the body source has for nghttp2 when it asks for the next DATA frame.
enum BodyChunk {
    /// Nothing buffered yet; the stream resumes when `resumeData` is called.
    case deferred
    /// `count` bytes were copied; `end` says whether the body is complete and how.
    case data(count: Int, end: BodyEnd?)
}

enum BodyEnd {
    case endStream
    case trailers(HeaderBlock)
}

/// Errors of the nghttp2 layer; each names the C function that failed.
public struct HTTP2SessionError: Error, CustomStringConvertible {
    public let function: String
    public let code: Int32

    /// The peer broke the protocol or flooded us: only reading its bytes fails this way
    /// (our own calls fail only for lack of memory or misuse).
    public var isPeerViolation: Bool { function == "nghttp2_session_mem_recv" }

    public var description: String {
        "\(function) failed: \(String(cString: nghttp2_strerror(code))) (\(code))"
    }
}

/// The only Swift type that touches nghttp2: one `nghttp2_session` in memory-I/O mode.
///
/// Bytes go in with `receive(_:)` (`nghttp2_session_mem_recv`) and come out with
/// `drainOutput(into:)` (`nghttp2_session_mem_send`); SwiftNIO does the socket work.
/// Not thread-safe: its owner touches it only on one event loop. The session holds an
/// unretained pointer to this object as `user_data`, so the object outlives the session
/// (it frees the session in `deinit`).
final class NGHTTP2Session {
    enum Role {
        case server
        case client
    }

    /// Settings we advertise, and how the session's receive windows refill.
    struct Settings {
        /// Most servers advertise 100 (RFC 9113 §6.5.2 recommends no less); each open
        /// stream may hold a partial message, so this also bounds per-connection state.
        var maxConcurrentStreams: UInt32 = 100
        var initialWindowSize: UInt32 = 8 << 20
        var connectionWindowSize: Int32 = 64 << 20
        var maxHeaderListSize: UInt32 = 64 << 10
        var maxFrameSize: UInt32 = 1 << 16
        /// When set, received DATA refills the peer's windows only as the owner calls
        /// `consume(streamID:bytes:)`: a server that holds request bytes for its handlers
        /// then holds at most a window's worth per stream and per connection, instead of
        /// whatever the peer sends (nghttp2 refills as soon as bytes are read by default).
        var refillsWindowsOnConsume = false
    }

    /// Why we end a session whose peer misbehaved (RFC 9113 §7 error codes).
    enum Termination {
        /// The peer overran a limit we advertised or enforce (header list, empty frames).
        case enhanceYourCalm
        /// The peer did not finish the preface and SETTINGS exchange in time.
        case settingsTimeout

        fileprivate var code: UInt32 {
            switch self {
            case .enhanceYourCalm: NGHTTP2_ENHANCE_YOUR_CALM.rawValue
            case .settingsTimeout: NGHTTP2_SETTINGS_TIMEOUT.rawValue
            }
        }
    }

    private var session: OpaquePointer?
    /// nghttp2's allocator for this session; outlives it (released after `deinit` runs).
    private let pool = NGHTTP2BlockPool()
    let role: Role

    init(role: Role, settings: Settings = Settings()) throws {
        self.role = role
        var callbacks: OpaquePointer?
        try Self.check(nghttp2_session_callbacks_new(&callbacks), "nghttp2_session_callbacks_new")
        defer { nghttp2_session_callbacks_del(callbacks) }
        Self.install(callbacks)

        var option: OpaquePointer?
        try Self.check(nghttp2_option_new(&option), "nghttp2_option_new")
        defer { nghttp2_option_del(option) }
        // Bound what a peer can make us hold or do: CONTINUATION floods, SETTINGS with
        // thousands of entries, PING and SETTINGS floods whose ACKs we would queue unsent
        // (mem_recv fails with NGHTTP2_ERR_FLOODED), and rapid reset (CVE-2023-44487: past
        // the token bucket nghttp2 sends GOAWAY). The values are nghttp2's own defaults,
        // set here so an upgrade of the library cannot quietly loosen them.
        nghttp2_option_set_max_continuations(option, 16)
        nghttp2_option_set_max_settings(option, 64)
        nghttp2_option_set_max_outbound_ack(option, 1000)
        nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33)
        if settings.refillsWindowsOnConsume {
            nghttp2_option_set_no_auto_window_update(option, 1)
        }

        var mem = Self.memory(for: pool)
        var created: OpaquePointer?
        switch role {
        case .server:
            try Self.check(
                nghttp2_session_server_new3(&created, callbacks, nil, option, &mem),
                "nghttp2_session_server_new3")
        case .client:
            try Self.check(
                nghttp2_session_client_new3(&created, callbacks, nil, option, &mem),
                "nghttp2_session_client_new3")
        }
        self.session = created

        var iv = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: settings.initialWindowSize),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: settings.maxHeaderListSize),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue),
                value: settings.maxFrameSize),
        ]
        try Self.check(
            nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count),
            "nghttp2_submit_settings")
        try Self.check(
            nghttp2_session_set_local_window_size(
                created, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize),
            "nghttp2_session_set_local_window_size")
    }

    deinit {
        nghttp2_session_del(session)
    }

    /// Routes this session's events to `owner`, which owns the session and so outlives it.
    /// Until then events are dropped (none can happen before the first `receive`).
    func attach(_ owner: NGHTTP2ChannelHandler) {
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(owner).toOpaque())
    }

    /// Starts a server session from an HTTP/1.1 request that asked for `Upgrade: h2c`
    /// (RFC 7540 §3.2): applies the client's settings from its `HTTP2-Settings` header (already
    /// base64url-decoded) as if sent in a SETTINGS frame, and opens stream 1, half-closed on
    /// the client's side, for the answer to that request. Call before anything is received.
    /// - Throws: `HTTP2SessionError` when the settings payload is malformed.
    func upgrade(settings payload: [UInt8], headRequest: Bool) throws {
        let rc = payload.withUnsafeBufferPointer { bytes in
            nghttp2_session_upgrade2(session, bytes.baseAddress, bytes.count, headRequest ? 1 : 0, nil)
        }
        try Self.check(rc, "nghttp2_session_upgrade2")
    }

    // MARK: I/O

    /// Feeds bytes read from the socket. Callbacks run before this returns.
    /// - Throws: `HTTP2SessionError` when the peer broke the protocol; nghttp2 has then
    ///   queued a GOAWAY, so the owner should drain output once more and close.
    func receive(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let n = nghttp2_session_mem_recv(
            session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if n < 0 { throw HTTP2SessionError(function: "nghttp2_session_mem_recv", code: Int32(n)) }
    }

    /// Appends every frame nghttp2 has ready to `buffer`.
    func drainOutput(into buffer: inout ByteBuffer) throws {
        while true {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { throw HTTP2SessionError(function: "nghttp2_session_mem_send", code: Int32(n)) }
            guard n > 0, let data else { return }
            buffer.writeBytes(UnsafeRawBufferPointer(start: data, count: n))
        }
    }

    var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    // MARK: Submitting frames

    /// Sends response headers; with `hasBody` the body is pulled through `sessionReadBody`.
    func submitResponse(streamID: Int32, headers: HeaderBlock, hasBody: Bool) throws {
        let rc: Int32
        if hasBody {
            var provider = Self.bodyProvider
            rc = nghttp2_submit_response(session, streamID, headers.nameValues, headers.count, &provider)
        } else {
            rc = nghttp2_submit_response(session, streamID, headers.nameValues, headers.count, nil)
        }
        withExtendedLifetime(headers) {}
        try Self.check(rc, "nghttp2_submit_response")
    }

    /// Opens a client stream whose body is pulled through `sessionReadBody`.
    /// - Returns: the new stream's id.
    func submitRequest(headers: HeaderBlock) throws -> Int32 {
        var provider = Self.bodyProvider
        let id = nghttp2_submit_request(session, nil, headers.nameValues, headers.count, &provider, nil)
        withExtendedLifetime(headers) {}
        try Self.check(id, "nghttp2_submit_request")
        return id
    }

    func resumeData(streamID: Int32) {
        // Fails only when the stream is gone or not deferred; both mean nothing to resume.
        _ = nghttp2_session_resume_data(session, streamID)
    }

    func resetStream(streamID: Int32) {
        _ = nghttp2_submit_rst_stream(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_CANCEL.rawValue)
    }

    /// RST_STREAM(NO_ERROR): "the response is complete, stop sending the request"
    /// (RFC 9113 §8.1), for a server that answered before the request ended.
    func stopRequestBody(streamID: Int32) {
        _ = nghttp2_submit_rst_stream(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
    }

    /// Hands `bytes` of the stream's received DATA back to the peer's stream and connection
    /// windows (nghttp2 sends WINDOW_UPDATE once half a window is consumed). The stream may be
    /// gone: the connection window is refilled anyway. Only with `refillsWindowsOnConsume`.
    func consume(streamID: Int32, bytes: Int) {
        // Fails only for stream 0, or without manual refills: both programming errors, and
        // nothing the peer can cause.
        _ = nghttp2_session_consume(session, streamID, bytes)
    }

    /// Like `consume(streamID:bytes:)` for bytes of a stream that is closing, whose own
    /// window no longer matters.
    func consumeConnection(bytes: Int) {
        _ = nghttp2_session_consume_connection(session, bytes)
    }

    /// Ends the session: a GOAWAY with `reason`, after which nghttp2 reads nothing more and
    /// `wantsRead` turns false, so the owner closes once the GOAWAY is out.
    func terminate(_ reason: Termination) {
        _ = nghttp2_session_terminate_session(session, reason.code)
    }

    /// Tells the peer to open no new streams; streams already accepted run to completion.
    func submitGoAway() {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        _ = nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    // MARK: C plumbing

    private static func check(_ rc: Int32, _ function: String) throws {
        if rc < 0 { throw HTTP2SessionError(function: function, code: rc) }
    }

    /// An `nghttp2_mem` that allocates from `pool` (nghttp2 copies the struct).
    private static func memory(for pool: NGHTTP2BlockPool) -> nghttp2_mem {
        nghttp2_mem(
            mem_user_data: Unmanaged.passUnretained(pool).toOpaque(),
            malloc: { size, data in
                guard let data else { return nil }
                return Unmanaged<NGHTTP2BlockPool>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.allocate(size) }
            },
            free: { pointer, data in
                guard let data else { return }
                Unmanaged<NGHTTP2BlockPool>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.release(pointer) }
            },
            calloc: { count, size, data in
                let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
                guard let data, !overflow else { return nil }
                let block = Unmanaged<NGHTTP2BlockPool>.fromOpaque(data)._withUnsafeGuaranteedRef {
                    $0.allocate(bytes)
                }
                block?.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
                return block
            },
            realloc: { pointer, size, data in
                guard let data else { return nil }
                return Unmanaged<NGHTTP2BlockPool>.fromOpaque(data)._withUnsafeGuaranteedRef {
                    $0.reallocate(pointer, to: size)
                }
            })
    }

    /// Runs `body` with the handler that owns the session, borrowed rather than retained:
    /// callbacks run inside `receive`/`drainOutput`, while the handler is alive anyway, and
    /// a dozen callbacks per request would otherwise each cost a retain/release pair.
    private static func withOwner<Result>(
        _ userData: UnsafeMutableRawPointer?, otherwise: Result, _ body: (NGHTTP2ChannelHandler) -> Result
    ) -> Result {
        guard let userData else { return otherwise }
        return Unmanaged<NGHTTP2ChannelHandler>.fromOpaque(userData)._withUnsafeGuaranteedRef(body)
    }

    private static let bodyProvider = nghttp2_data_provider(
        source: nghttp2_data_source(ptr: nil),
        read_callback: { session, streamID, buf, length, flags, _, userData in
            guard let buf, let flags else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
            let chunk = NGHTTP2Session.withOwner(userData, otherwise: BodyChunk.data(count: 0, end: .endStream)) {
                $0.sessionReadBody(streamID: streamID, into: UnsafeMutableRawBufferPointer(start: buf, count: length))
            }
            switch chunk {
            case .deferred:
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            case .data(let count, nil):
                return count
            case .data(let count, .endStream?):
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                return count
            case .data(let count, .trailers(let trailers)?):
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let rc = nghttp2_submit_trailer(session, streamID, trailers.nameValues, trailers.count)
                withExtendedLifetime(trailers) {}
                return rc < 0 ? Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) : count
            }
        })

    private static func install(_ callbacks: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let frame else { return 0 }
            NGHTTP2Session.withOwner(userData, otherwise: ()) {
                $0.sessionBeginHeaders(streamID: frame.pointee.hd.stream_id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) {
            _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let name, let value else { return 0 }
            let accepted = NGHTTP2Session.withOwner(userData, otherwise: true) {
                $0.sessionHeader(
                    streamID: frame.pointee.hd.stream_id,
                    name: UnsafeRawBufferPointer(start: name, count: nameLength),
                    value: UnsafeRawBufferPointer(start: value, count: valueLength))
            }
            // Refusing a field resets the stream and skips the rest of its header block.
            return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            guard let frame else { return 0 }
            let hd = frame.pointee.hd
            let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(hd.type) {
            case NGHTTP2_HEADERS.rawValue:
                NGHTTP2Session.withOwner(userData, otherwise: ()) {
                    $0.sessionHeadersComplete(streamID: hd.stream_id, endStream: endStream)
                }
            case NGHTTP2_DATA.rawValue where endStream:
                NGHTTP2Session.withOwner(userData, otherwise: ()) { $0.sessionDataEndStream(streamID: hd.stream_id) }
            case NGHTTP2_DATA.rawValue where hd.length == 0:
                NGHTTP2Session.withOwner(userData, otherwise: ()) { $0.sessionEmptyData() }
            case NGHTTP2_SETTINGS.rawValue:
                let ack = hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0
                NGHTTP2Session.withOwner(userData, otherwise: ()) { $0.sessionSettings(ack: ack) }
            default:
                break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) {
            _, _, streamID, data, length, userData in
            guard let data else { return 0 }
            NGHTTP2Session.withOwner(userData, otherwise: ()) {
                $0.sessionData(streamID: streamID, bytes: UnsafeRawBufferPointer(start: data, count: length))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            guard let frame else { return 0 }
            if frame.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                let code = frame.pointee.goaway.error_code
                NGHTTP2Session.withOwner(userData, otherwise: ()) { $0.sessionSentGoAway(errorCode: code) }
                return 0
            }
            guard frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 else { return 0 }
            NGHTTP2Session.withOwner(userData, otherwise: ()) {
                $0.sessionSentEndStream(streamID: frame.pointee.hd.stream_id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) {
            _, streamID, errorCode, userData in
            NGHTTP2Session.withOwner(userData, otherwise: ()) {
                $0.sessionStreamClosed(streamID: streamID, errorCode: errorCode)
            }
            return 0
        }
    }
}
