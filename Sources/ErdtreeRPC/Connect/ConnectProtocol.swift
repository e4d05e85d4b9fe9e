import NIOCore
import NIOHTTP1

/// The Connect protocol's unary rules (connectrpc.com/docs/protocol): codecs by content type,
/// error codes by name with their HTTP statuses, and the error body.
enum ConnectProtocol {
    enum Codec {
        case proto
        case json

        var contentType: String {
            switch self {
            case .proto: "application/proto"
            case .json: "application/json"
            }
        }
    }

    /// The codec of a unary request's `content-type` (parameters such as `charset=utf-8` allowed
    /// for JSON); nil when Connect unary does not take it.
    static func codec(contentType: String) -> Codec? {
        // A media type holds no blanks, so dropping them trims it.
        let media = contentType.split(separator: ";", maxSplits: 1).first?
            .filter { $0 != " " && $0 != "\t" }.lowercased()
        switch media {
        case "application/proto": return .proto
        case "application/json": return .json
        default: return nil
        }
    }

    /// The codec whose media type (`[proto, json]`, in that order) `value` names, optionally
    /// followed by parameters, read from the header bytes (no string per request).
    static func codec(_ value: UnsafeRawBufferPointer, among mediaTypes: [StaticString]) -> Codec? {
        for (mediaType, codec) in zip(mediaTypes, [Codec.proto, .json]) {
            let length = mediaType.utf8CodeUnitCount
            let expected = UnsafeBufferPointer(start: mediaType.utf8Start, count: length)
            guard value.count >= length, zip(value.prefix(length), expected).allSatisfy({ $0 | 0x20 == $1 | 0x20 })
            else { continue }
            let rest = value.dropFirst(length)
            if rest.isEmpty || rest.first == UInt8(ascii: ";") || rest.first == UInt8(ascii: " ") { return codec }
        }
        return nil
    }

    /// Connect's name for a code (`invalid_argument`).
    static func name(_ code: RPCStatus.Code) -> String {
        code == .cancelled ? "canceled" : code.description.lowercased()
    }

    /// The HTTP status Connect gives an error code.
    static func httpStatus(_ code: RPCStatus.Code) -> HTTPResponseStatus {
        switch code {
        case .cancelled: .custom(code: 499, reasonPhrase: "Client Closed Request")
        case .invalidArgument, .failedPrecondition, .outOfRange: .badRequest
        case .deadlineExceeded: .gatewayTimeout
        case .notFound: .notFound
        case .alreadyExists, .aborted: .conflict
        case .permissionDenied: .forbidden
        case .resourceExhausted: .tooManyRequests
        case .unimplemented: .notImplemented
        case .unavailable: .serviceUnavailable
        case .unauthenticated: .unauthorized
        default: .internalServerError
        }
    }

    /// The JSON error body: `{"code":"…","message":"…"}` (no message member when empty).
    static func errorBody(_ status: RPCStatus) -> [UInt8] {
        var out = Array(#"{"code":"#.utf8)
        JSONWriter.appendString(name(status.code), to: &out)
        if !status.message.isEmpty {
            out.append(contentsOf: Array(#","message":"#.utf8))
            JSONWriter.appendString(status.message, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// One Connect unary exchange, whatever carries it (HTTP/1.1 or HTTP/2): checks the request,
/// turns its body into the binary request the handler takes, and the finished call into the
/// response's status, content type and body.
struct ConnectUnary {
    let codec: ConnectProtocol.Codec
    /// The client's `accept-encoding` includes gzip: large answers are sent compressed.
    var acceptsGzip = false

    /// Answers smaller than this go uncompressed: gzip's header and CPU cost more than it saves.
    static let compressMinBytes = 1024
    /// What `content-encoding` (and a GET's `compression`) may name.
    static let encodings = "gzip, identity"

    /// What a Connect unary call answers.
    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: ByteBuffer
        /// `gzip` when `body` is compressed.
        var contentEncoding: String?
    }

    init(codec: ConnectProtocol.Codec, acceptEncoding: String? = nil) {
        self.codec = codec
        acceptsGzip = acceptEncoding.map(Self.namesGzip) ?? false
    }

    /// Whether an `accept-encoding` list offers gzip (with no `q=0`).
    static func namesGzip(_ list: String) -> Bool {
        list.split(separator: ",").contains { item in
            let parts = item.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            return parts.first == "gzip" && !parts.dropFirst().contains { $0 == "q=0" || $0 == "q=0.0" }
        }
    }

    /// The request's checks in the protocol's order, then its body as the binary message.
    /// - Parameters:
    ///   - version: `connect-protocol-version`, when sent.
    ///   - timeout: `connect-timeout-ms`, when sent; its value is returned as a deadline.
    ///   - encoding: `content-encoding` (or a GET's `compression`), when sent.
    static func prepare(
        route: RPCRouter.Route, codec: ConnectProtocol.Codec, version: String?, timeout: String?, encoding: String?,
        body: ByteBuffer, maxBytes: Int, allocator: ByteBufferAllocator
    ) -> Result<(request: ByteBuffer, timeoutMs: Int64?), Refusal> {
        var body = body
        switch encoding?.lowercased() {
        case nil, "identity": break
        case "gzip":
            do throws(RPCStatus) {
                body = try Gzip.decompress(body, limit: maxBytes, allocator: allocator)
            } catch {
                return .failure(Refusal(error))
            }
        case let other?:
            return .failure(
                Refusal(
                    RPCStatus(
                        .unimplemented, "content-encoding \(other) is not supported; this server takes \(encodings)")
                ))
        }
        if let version, version != "1" {
            return .failure(Refusal(RPCStatus(.invalidArgument, "connect-protocol-version \(version) is not 1")))
        }
        var timeoutMs: Int64?
        if let timeout {
            guard timeout.count <= 10, let milliseconds = Int64(timeout), milliseconds >= 0 else {
                return .failure(
                    Refusal(RPCStatus(.invalidArgument, "connect-timeout-ms \(timeout) is not 0-10 digits")))
            }
            timeoutMs = milliseconds
        }
        guard case .unary = route.handler else {
            return .failure(
                Refusal(
                    RPCStatus(
                        .unimplemented,
                        "\(route.path) is a streaming method; this server takes only unary calls over Connect"),
                    http: .unsupportedMediaType))
        }
        guard codec == .json else { return .success((body, timeoutMs)) }
        guard let transcoder = route.transcoder else {
            return .failure(
                Refusal(
                    RPCStatus(.unimplemented, "\(route.path) has no JSON mapping; use application/proto"),
                    http: .unsupportedMediaType))
        }
        do throws(RPCStatus) {
            return .success((try transcoder.binaryRequest(fromJSON: body, allocator: allocator), timeoutMs))
        } catch {
            return .failure(Refusal(error))
        }
    }

    /// Why `prepare` refused a request, and the HTTP status when not the code's own.
    struct Refusal: Error {
        var status: RPCStatus
        var http: HTTPResponseStatus?

        init(_ status: RPCStatus, http: HTTPResponseStatus? = nil) {
            self.status = status
            self.http = http
        }
    }

    /// The response to a finished call: its message (unframed, transcoded for JSON) with 200,
    /// or its error as Connect's JSON body with the code's HTTP status.
    func response(to call: ServerCall) -> Response {
        let status = call.finalStatus ?? RPCStatus(.internal, "the call ended without a status")
        guard status.code == .ok else { return Self.error(status, allocator: call.allocator) }
        // The message was framed for gRPC (5-byte prefix); Connect unary sends it bare, from
        // the same buffer.
        var message = call.outbound
        guard message.readableBytes >= GRPCMessageFramer.headroomBytes else {
            return Self.error(
                RPCStatus(.internal, "the method finished OK without a response message"), allocator: call.allocator)
        }
        message.moveReaderIndex(forwardBy: GRPCMessageFramer.headroomBytes)
        guard codec == .json else {
            return compressed(Response(status: .ok, contentType: codec.contentType, body: message), call)
        }
        guard let transcoder = call.route?.transcoder else {
            return Self.error(RPCStatus(.internal, "no JSON mapping for the response"), allocator: call.allocator)
        }
        do throws(RPCStatus) {
            let json = try transcoder.jsonResponse(fromBinary: message, allocator: call.allocator)
            return compressed(Response(status: .ok, contentType: codec.contentType, body: json), call)
        } catch {
            return Self.error(error, allocator: call.allocator)
        }
    }

    private func compressed(_ response: Response, _ call: ServerCall) -> Response {
        guard acceptsGzip, response.body.readableBytes >= Self.compressMinBytes else { return response }
        var gzipped = response
        gzipped.body = Gzip.compress(response.body, allocator: call.allocator)
        gzipped.contentEncoding = "gzip"
        return gzipped
    }

    /// An error answer; `http` overrides the code's status (404 for an unknown path, 415 …).
    static func error(_ status: RPCStatus, http: HTTPResponseStatus? = nil, allocator: ByteBufferAllocator) -> Response
    {
        Response(
            status: http ?? ConnectProtocol.httpStatus(status.code), contentType: "application/json",
            body: allocator.buffer(bytes: ConnectProtocol.errorBody(status)))
    }
}

extension ConnectProtocol {
    /// A Connect GET's query (connectrpc.com/docs/protocol, "Unary-Get-Request"): the message,
    /// percent-encoded or (with `base64=1`) URL-safe base64, in the codec `encoding` names;
    /// `compression` (returned, for `ConnectUnary.prepare`); `connect`, when given, `v1`. Other
    /// parameters are ignored.
    static func getRequest(query: Substring) -> Result<(codec: Codec, body: [UInt8], compression: String?), RPCStatus> {
        var parameters: [String: [UInt8]] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecode(parts[0]), let value = percentDecode(parts.count > 1 ? parts[1] : "") else {
                return .failure(RPCStatus(.invalidArgument, "the query is not valid percent-encoding"))
            }
            parameters[String(decoding: name, as: UTF8.self)] = value
        }
        func text(_ name: String) -> String? { parameters[name].map { String(decoding: $0, as: UTF8.self) } }
        if let version = text("connect"), version != "v1" {
            return .failure(RPCStatus(.invalidArgument, "connect=\(version) is not v1"))
        }
        let codec: Codec
        switch text("encoding") {
        case "json": codec = .json
        case "proto": codec = .proto
        case nil: return .failure(RPCStatus(.invalidArgument, "a Connect GET needs encoding=json or encoding=proto"))
        case let other?: return .failure(RPCStatus(.invalidArgument, "encoding=\(other) is not json or proto"))
        }
        guard var message = parameters["message"] else {
            return .failure(RPCStatus(.invalidArgument, "a Connect GET needs the message parameter"))
        }
        if text("base64") == "1" {
            guard let decoded = Base64.decode(String(decoding: message, as: UTF8.self)) else {
                return .failure(RPCStatus(.invalidArgument, "message is not base64"))
            }
            message = decoded
        }
        return .success((codec, message, text("compression")))
    }

    /// Query-component percent-decoding (`+` is a space, as in forms); nil when malformed.
    static func percentDecode(_ text: Substring) -> [UInt8]? {
        var out: [UInt8] = []
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "+"): out.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else {
                    return nil
                }
                out.append(high << 4 | low)
            default: out.append(byte)
            }
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Connect streaming (`application/connect+proto|json`) on HTTP/2: the messages travel in the
/// same 5-byte envelopes as gRPC's; the stream ends with an end-stream envelope (flag 0x02)
/// holding `{}` or `{"error":{"code","message"}}` instead of trailers.
enum ConnectStreaming {
    static let compressedFlag: UInt8 = 0x01
    static let endStreamFlag: UInt8 = 0x02

    /// Applies a streaming call's Connect headers (already on the call): which codec it
    /// speaks, `connect-content-encoding` (gzip request envelopes are inflated),
    /// `connect-accept-encoding` (with gzip, answers of `ConnectUnary.compressMinBytes` or
    /// more go compressed), `connect-timeout-ms`. From here on the call is a gRPC call with
    /// Connect's framing details. Returns why the call is refused, if it is.
    static func configure(_ call: ServerCall, codec: ConnectProtocol.Codec) -> RPCStatus? {
        call.connectStream = codec
        switch call.contentEncoding?.lowercased() {
        case nil, "identity": break
        case "gzip": call.deframer.gzipAccepted = true
        case let other?:
            return RPCStatus(
                .unimplemented,
                "connect-content-encoding \(other) is not supported; this server takes \(ConnectUnary.encodings)")
        }
        call.compressesStream = call.connectAcceptEncoding.map(ConnectUnary.namesGzip) ?? false
        if let timeout = call.connectTimeout {
            guard timeout.count <= 10, let milliseconds = Int64(timeout), milliseconds >= 0 else {
                return RPCStatus(.invalidArgument, "connect-timeout-ms \(timeout) is not 0-10 digits")
            }
            call.timeoutNanos = milliseconds * 1_000_000
        }
        return nil
    }

    /// The response headers' content type, and `connect-content-encoding` when answers may
    /// come compressed.
    static func responseHeaders(_ call: ServerCall, codec: ConnectProtocol.Codec) -> [(String, String)] {
        var headers = [("content-type", contentType(codec))]
        if call.compressesStream { headers.append(("connect-content-encoding", "gzip")) }
        return headers
    }

    /// `application/connect+proto` or `application/connect+json` (with optional parameters).
    static func codec(contentType: UnsafeRawBufferPointer) -> ConnectProtocol.Codec? {
        ConnectProtocol.codec(contentType, among: ["application/connect+proto", "application/connect+json"])
    }

    static func contentType(_ codec: ConnectProtocol.Codec) -> String {
        codec == .json ? "application/connect+json" : "application/connect+proto"
    }

    /// A response message as JSON, or nil when it cannot be.
    static func json(of message: ByteBuffer, route: RPCRouter.Route?, allocator: ByteBufferAllocator) -> ByteBuffer? {
        try? route?.transcoder?.jsonResponse(fromBinary: message, allocator: allocator)
    }

    /// A request message in the binary encoding (JSON transcoded), or the refusal.
    static func request(
        _ message: ByteBuffer, codec: ConnectProtocol.Codec, route: RPCRouter.Route, allocator: ByteBufferAllocator
    )
        -> Result<ByteBuffer, RPCStatus>
    {
        guard codec == .json else { return .success(message) }
        guard let transcoder = route.transcoder else {
            return .failure(
                RPCStatus(.unimplemented, "\(route.path) has no JSON mapping; use application/connect+proto"))
        }
        do throws(RPCStatus) {
            return .success(try transcoder.binaryRequest(fromJSON: message, allocator: allocator))
        } catch {
            return .failure(error)
        }
    }

    /// The end-stream envelope for `status`.
    static func endStream(_ status: RPCStatus, into out: inout ByteBuffer) {
        var body = Array("{".utf8)
        if status.code != .ok {
            body += Array(#""error":"#.utf8)
            body += ConnectProtocol.errorBody(status)
        }
        body.append(UInt8(ascii: "}"))
        out.writeInteger(endStreamFlag)
        out.writeInteger(UInt32(body.count))
        out.writeBytes(body)
    }
}
