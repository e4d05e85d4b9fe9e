import NIOCore
import NIOHTTP1

/// One Connect unary exchange (connectrpc.com/docs/protocol, "Unary-Request"), whatever
/// carries it: the request's rules as pure functions of its Connect fields and body, and the
/// answer built from the call's final status and message.
struct ConnectUnary: Equatable {
    let codec: ConnectProtocol.Codec
    /// The client's `accept-encoding` offers gzip: large answers are sent compressed.
    let acceptsGzip: Bool
    /// The body's `content-encoding`, or a GET's `compression` parameter.
    let encoding: String?
    let protocolVersion: String?
    let timeoutMs: String?

    init(codec: ConnectProtocol.Codec, fields: RequestHead.ConnectFields, encoding: String?) {
        self.codec = codec
        self.acceptsGzip = ConnectProtocol.namesGzip(fields.acceptEncoding)
        self.encoding = encoding
        self.protocolVersion = fields.protocolVersion
        self.timeoutMs = fields.timeoutMs
    }

    /// What a Connect unary call answers: its body goes out whole, with a content-length over
    /// HTTP/1.1.
    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: ByteBuffer
        /// `gzip` when `body` is compressed.
        var contentEncoding: String?
    }

    /// The request's checks in the protocol's order, then its body as the binary message the
    /// handler takes, and the call's timeout.
    func request(from body: ByteBuffer, route: RPCRouter.Route, maxBytes: Int, allocator: ByteBufferAllocator)
        -> Result<(request: ByteBuffer, timeoutNanos: Int64?), Refusal>
    {
        var body = body
        switch encoding?.lowercased() {
        case nil, "identity": break
        case "gzip":
            do throws(RPCStatus) {
                body = try Gzip.decompress(body, limit: maxBytes, allocator: allocator)
            } catch {
                return .failure(.connect(error))
            }
        case let other?:
            return .failure(
                .connect(
                    RPCStatus(
                        .unimplemented,
                        "content-encoding \(other) is not supported; this server takes \(ConnectProtocol.encodings)")))
        }
        if let protocolVersion, protocolVersion != "1" {
            return .failure(
                .connect(RPCStatus(.invalidArgument, "connect-protocol-version \(protocolVersion) is not 1")))
        }
        let timeoutNanos: Int64?
        switch ConnectProtocol.timeoutNanos(timeoutMs) {
        case .success(let nanos): timeoutNanos = nanos
        case .failure(let status): return .failure(.connect(status))
        }
        guard case .unary = route.handler else {
            return .failure(
                .connect(
                    RPCStatus(
                        .unimplemented,
                        "\(route.path) is a streaming method; this server takes only unary calls over Connect"),
                    http: .unsupportedMediaType))
        }
        guard codec == .json else { return .success((body, timeoutNanos)) }
        guard let transcoder = route.transcoder else {
            return .failure(
                .connect(
                    RPCStatus(.unimplemented, "\(route.path) has no JSON mapping; use application/proto"),
                    http: .unsupportedMediaType))
        }
        do throws(RPCStatus) {
            return .success((try transcoder.binaryRequest(fromJSON: body, allocator: allocator), timeoutNanos))
        } catch {
            return .failure(.connect(error))
        }
    }

    /// The answer to a finished call: its message (sent framed for gRPC; Connect unary sends
    /// it bare, from the same buffer), transcoded for JSON, with 200; or its error as Connect's
    /// JSON body with the code's HTTP status.
    func response(
        to status: RPCStatus, framedMessage: ByteBuffer, route: RPCRouter.Route?, allocator: ByteBufferAllocator
    ) -> Response {
        guard status.code == .ok else { return Self.error(status, allocator: allocator) }
        var message = framedMessage
        guard message.readableBytes >= GRPCMessageFramer.headroomBytes else {
            return Self.error(
                RPCStatus(.internal, "the method finished OK without a response message"), allocator: allocator)
        }
        message.moveReaderIndex(forwardBy: GRPCMessageFramer.headroomBytes)
        guard codec == .json else {
            return compressed(Response(status: .ok, contentType: codec.contentType, body: message), allocator)
        }
        guard let transcoder = route?.transcoder else {
            return Self.error(RPCStatus(.internal, "no JSON mapping for the response"), allocator: allocator)
        }
        do throws(RPCStatus) {
            let json = try transcoder.jsonResponse(fromBinary: message, allocator: allocator)
            return compressed(Response(status: .ok, contentType: codec.contentType, body: json), allocator)
        } catch {
            return Self.error(error, allocator: allocator)
        }
    }

    private func compressed(_ response: Response, _ allocator: ByteBufferAllocator) -> Response {
        guard acceptsGzip, response.body.readableBytes >= ConnectProtocol.compressMinBytes else { return response }
        var gzipped = response
        gzipped.body = Gzip.compress(response.body, allocator: allocator)
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
