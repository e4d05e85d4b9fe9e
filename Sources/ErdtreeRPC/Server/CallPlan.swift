import NIOHTTP1

/// The transport a call arrived on: it decides the few rules that differ between them.
enum ServerTransport {
    /// gRPC and Connect, full duplex. A request that is neither is refused with a bare HTTP
    /// status, as the gRPC spec has it; errors found in the head are answered at once.
    case http2
    /// Connect only, one whole request and then its answer (NIOHTTP1's pipeline keeps
    /// requests in order), so every refusal is a Connect error answered once the request ended.
    case http1

    /// Whether the transport can answer while the request is still arriving.
    var answersEarly: Bool { self == .http2 }
}

/// Why a request is refused before any handler runs, in the format its protocol answers in.
/// `indirect` keeps it one word wide in every call's state (a gRPC call never has one).
indirect enum Refusal: Error, Equatable {
    /// gRPC: a trailers-only response; `advertiseEncodings` adds `grpc-accept-encoding`.
    case grpc(RPCStatus, advertiseEncodings: Bool = false)
    /// Connect streaming: 200, and the error in the end-stream envelope.
    case connectStream(RPCStatus, ConnectStreaming.Options)
    /// Connect: the JSON error body with the code's HTTP status, or `http`.
    case connect(RPCStatus, http: HTTPResponseStatus? = nil, allow: String? = nil, closesConnection: Bool = false)
    /// Neither gRPC nor Connect (HTTP/2 only): a bare HTTP status.
    case http(HTTPResponseStatus, allow: String? = nil)
}

/// What a request is, decided from its head alone: the protocol that serves it, or why it is
/// refused. A pure function of the head and the transport, so every rule about methods,
/// content types and unknown paths is written here once.
enum CallPlan {
    /// gRPC (PROTOCOL-HTTP2).
    case grpc(RPCRouter.Route)
    /// Connect unary POST: the body follows, and is checked once it is all in.
    case connectUnary(ConnectUnary, RPCRouter.Route)
    /// Connect GET: the whole request is in the query.
    case connectGet(ConnectUnary, RPCRouter.Route, message: [UInt8])
    /// Connect streaming.
    case connectStream(ConnectStreaming.Options, RPCRouter.Route)
    /// Refused. `early`: answered as soon as the head is in where the transport can; otherwise
    /// once the request has ended, its body dropped meanwhile (an answer mid-upload, and the
    /// RST_STREAM that must follow it, make curl 7.88 fail with "Stream error" instead of
    /// printing the status: measured on 12 of 400 `text/plain` POSTs).
    case refuse(Refusal, early: Bool)
    /// `GET /healthz` over HTTP/2 (HTTP/1.1 answers it before any call exists): over TLS,
    /// ALPN gives load balancers and curl HTTP/2 whether they want it or not.
    case healthz
    /// `GET /metrics`, over either transport: the observer's exposition.
    case metrics

    static func plan(_ head: RequestHead, transport: ServerTransport) -> CallPlan {
        let plan = protocolPlan(head, transport: transport)
        guard let requirement = head.route?.requirement,
            let status = head.credential.refusal(of: requirement, path: head.path)
        else { return plan }
        // Refused in the protocol the request speaks, once it is known to speak one: a request
        // that is neither is refused for that first, which tells its sender nothing more. A
        // Connect request with a body is answered once it has ended (see `refuse` for curl).
        switch plan {
        case .grpc: return .refuse(.grpc(status), early: true)
        case .connectUnary: return .refuse(.connect(status), early: false)
        case .connectGet: return .refuse(.connect(status), early: true)
        case .connectStream(let options, _): return .refuse(.connectStream(status, options), early: false)
        case .refuse, .healthz, .metrics: return plan
        }
    }

    private static func protocolPlan(_ head: RequestHead, transport: ServerTransport) -> CallPlan {
        if head.route == nil, head.path == "/metrics" {
            // Scrapers GET; RFC 9110 §15.5.6 asks for the allowed methods otherwise.
            return head.method == .get ? .metrics : .refuse(.http(.methodNotAllowed, allow: "GET"), early: false)
        }
        // HTTP/1.1 carries only Connect, whose unknown procedures are 404 whatever the method.
        if transport == .http1, head.route == nil { return unknownMethod(head, transport, early: false) }
        if head.method == .get, let route = head.route, route.noSideEffects, !head.contentType.isGRPC {
            return connectGet(head, route)
        }
        guard head.method == .post else {
            // Only a request no route took pays for the comparison.
            if transport == .http2, head.route == nil, head.method == .get, head.path == "/healthz" { return .healthz }
            // gRPC and Connect unary take POST (PROTOCOL-HTTP2); RFC 9110 §15.5.6 asks for the
            // allowed methods.
            let allowed = head.route?.noSideEffects == true && !head.contentType.isGRPC ? "GET, POST" : "POST"
            return .refuse(
                httpRefusal(.methodNotAllowed, "\(head.path) takes \(allowed)", allow: allowed, transport), early: false
            )
        }
        switch head.contentType {
        case .grpc where transport == .http2:
            if let encoding = head.grpcEncoding {
                let status = RPCStatus(
                    .unimplemented, "grpc-encoding '\(encoding)' is not supported; this server accepts: identity")
                return .refuse(.grpc(status, advertiseEncodings: true), early: true)
            }
            guard let route = head.route else { return unknownMethod(head, transport, early: true) }
            return .grpc(route)
        case .connect(let codec):
            guard let route = head.route else { return unknownMethod(head, transport, early: false) }
            return .connectUnary(
                ConnectUnary(codec: codec, fields: head.connect, encoding: head.connect.contentEncoding), route)
        case .connectStream(let codec):
            return connectStream(head, codec: codec, transport: transport)
        case .grpc, .missing, .other:
            let given: String
            switch head.contentType {
            case .other(let value): given = value
            case .grpc: given = "application/grpc"
            default: given = "none"
            }
            let message =
                "content-type \(given) is not served; Connect unary takes application/proto or application/json"
            return .refuse(httpRefusal(.unsupportedMediaType, message, transport), early: false)
        }
    }

    private static func connectGet(_ head: RequestHead, _ route: RPCRouter.Route) -> CallPlan {
        switch ConnectGet.parse(query: Substring(head.query ?? "")) {
        case .success(let (codec, message, compression)):
            return .connectGet(
                ConnectUnary(codec: codec, fields: head.connect, encoding: compression), route, message: message)
        case .failure(let status):
            return .refuse(.connect(status), early: true)
        }
    }

    private static func connectStream(_ head: RequestHead, codec: ConnectProtocol.Codec, transport: ServerTransport)
        -> CallPlan
    {
        let options: ConnectStreaming.Options
        switch ConnectStreaming.Options.read(codec: codec, fields: head.connect) {
        case .success(let read): options = read
        case .failure(let status):
            return .refuse(.connectStream(status, ConnectStreaming.Options(codec: codec)), early: true)
        }
        guard let route = head.route else {
            return .refuse(
                .connectStream(RPCStatus(.unimplemented, "unknown method \(head.path)"), options), early: true)
        }
        if transport == .http1, case .bidirectional = route.handler {
            // A client coded for full duplex would wait forever for answers to messages it
            // cannot send; closing the connection unblocks it (connect-go does the same).
            let status = RPCStatus(
                .unimplemented,
                "\(route.path) is a bidirectional stream, which needs HTTP/2 (prior knowledge or Upgrade: h2c)")
            return .refuse(.connect(status, http: .httpVersionNotSupported, closesConnection: true), early: false)
        }
        return .connectStream(options, route)
    }

    private static func unknownMethod(_ head: RequestHead, _ transport: ServerTransport, early: Bool) -> CallPlan {
        let status = RPCStatus(.unimplemented, "unknown method \(head.path)")
        if transport == .http2, head.contentType.isGRPC { return .refuse(.grpc(status), early: early) }
        // Connect: an unknown procedure is 404 with code unimplemented.
        return .refuse(.connect(status, http: .notFound), early: early)
    }

    /// An HTTP-level refusal: a bare status over HTTP/2 (the client may be anything), a Connect
    /// error over HTTP/1.1 (which serves only Connect).
    private static func httpRefusal(
        _ http: HTTPResponseStatus, _ message: String, allow: String? = nil, _ transport: ServerTransport
    ) -> Refusal {
        switch transport {
        case .http2: .http(http, allow: allow)
        case .http1: .connect(RPCStatus(.unimplemented, message), http: http, allow: allow)
        }
    }
}
