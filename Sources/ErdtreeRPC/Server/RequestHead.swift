#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the call machinery needs from a request's header fields, whichever transport carried
/// them: HTTP/2 hands them over one field at a time as nghttp2 decodes them, HTTP/1.1 from the
/// parsed head (names lower-cased first, as HTTP/2 requires them to be already).
///
/// Read from the raw bytes: a gRPC request carries half a dozen fields, and none of what it
/// needs becomes a `String` (the route is found by its bytes). The Connect fields, which only
/// Connect requests use, are copied only for requests not already known to be gRPC.
struct RequestHead {
    enum Method: Equatable {
        case post
        case get
        case other
    }

    /// The request's `content-type`, as far as the protocols here tell them apart.
    enum ContentType: Equatable {
        case missing
        /// `application/grpc`, `application/grpc+proto` or with parameters.
        case grpc
        /// Connect unary: `application/proto` or `application/json`.
        case connect(ConnectProtocol.Codec)
        /// Connect streaming: `application/connect+proto` or `application/connect+json`.
        case connectStream(ConnectProtocol.Codec)
        case other(String)

        var isGRPC: Bool { self == .grpc }
    }

    /// The Connect protocol's request fields, unparsed: the rules that read them are pure
    /// functions in `ConnectUnary` and `ConnectStreaming`.
    struct ConnectFields: Equatable {
        var protocolVersion: String?
        var timeoutMs: String?
        /// Unary: `content-encoding`, and `accept-encoding` for the answer.
        var contentEncoding: String?
        var acceptEncoding: String?
        /// Streaming: `connect-content-encoding`, and `connect-accept-encoding` for the answer.
        var streamContentEncoding: String?
        var streamAcceptEncoding: String?
    }

    var method = Method.other
    /// The route `:path` names; nil when the router has none for it (see `path`).
    var route: RPCRouter.Route?
    /// `:path` without its query, kept as text only when no route matched it (for the error).
    var unknownPath = ""
    /// What follows `?` in `:path` (a Connect GET's message), if anything.
    var query: String?
    var contentType = ContentType.missing
    /// From `grpc-timeout`; a malformed value is ignored rather than failing the call, as
    /// grpc-go does.
    var grpcTimeoutNanos: Int64?
    /// `grpc-encoding` when it names anything but `identity`: this server takes no compressed
    /// gRPC messages.
    var grpcEncoding: String?
    /// What `authorization` showed; read only when the router checks tokens.
    var credential = Credential.none
    /// Boxed: only Connect requests carry these, and a gRPC call's head, built for every
    /// request, stays small (measured: the unboxed fields cost ~100 instructions a call in
    /// initialising and copying the call's state).
    private var connectBox: ConnectBox?

    private final class ConnectBox {
        var fields = ConnectFields()
    }

    var connect: ConnectFields { connectBox?.fields ?? ConnectFields() }

    /// The method's path, e.g. `/erdtree.v1.KVStore/Get`.
    var path: String { route?.path ?? unknownPath }

    /// Takes one header field. Names are lower-case (HTTP/2 requires it; HTTP/1.1 callers
    /// lower-case them); the byte views need only live for the call.
    @inline(__always)
    mutating func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, router: RPCRouter) {
        switch name.count {
        case 5 where name.equals(":path"):
            setPath(value, router: router)
        case 7 where name.equals(":method"):
            method = value.equals("POST") ? .post : value.equals("GET") ? .get : .other
        case 12 where name.equals("content-type"):
            contentType = Self.contentType(value)
        case 12 where name.equals("grpc-timeout"):
            grpcTimeoutNanos = GRPCTimeout.parse(value)
        case 13 where name.equals("grpc-encoding"):
            grpcEncoding = value.equals("identity") ? nil : String(decoding: value, as: UTF8.self)
        case 13 where name.equals("authorization"):
            // Checked here, against the bytes as they arrive: the token never becomes a String
            // that could outlive the request or reach a log.
            if let tokens = router.tokens { credential = tokens.authenticate(value) }
        // gRPC clients send accept-encoding and content-encoding too (grpc-encoding is what
        // counts for them), so a call already known to be gRPC skips the copies.
        case 15 where name.equals("accept-encoding") && !contentType.isGRPC:
            setConnect(\.acceptEncoding, value)
        case 16 where name.equals("content-encoding") && !contentType.isGRPC:
            setConnect(\.contentEncoding, value)
        case 18 where name.equals("connect-timeout-ms"):
            setConnect(\.timeoutMs, value)
        case 23 where name.equals("connect-accept-encoding"):
            setConnect(\.streamAcceptEncoding, value)
        case 24 where name.equals("connect-protocol-version"):
            setConnect(\.protocolVersion, value)
        case 24 where name.equals("connect-content-encoding"):
            setConnect(\.streamContentEncoding, value)
        default:
            break
        }
    }

    private mutating func setConnect(_ field: WritableKeyPath<ConnectFields, String?>, _ value: UnsafeRawBufferPointer)
    {
        if connectBox == nil || !isKnownUniquelyReferenced(&connectBox) {
            let box = ConnectBox()
            box.fields = connect
            connectBox = box
        }
        connectBox?.fields[keyPath: field] = String(decoding: value, as: UTF8.self)
    }

    /// A query only comes with a Connect GET; gRPC paths have none.
    private mutating func setPath(_ value: UnsafeRawBufferPointer, router: RPCRouter) {
        // memchr: Collection.firstIndex walks byte by byte (~170 instructions a request).
        let question = value.baseAddress.flatMap { base in
            memchr(base, Int32(UInt8(ascii: "?")), value.count).map { UnsafeRawPointer($0) - base }
        }
        let path = question.map { UnsafeRawBufferPointer(start: value.baseAddress, count: $0) } ?? value
        // No `.map(router.route(at:))`: the partial application copies the whole router.
        if let index = router.routeIndex(for: path) { route = router.route(at: index) }
        if route == nil { unknownPath = String(decoding: path, as: UTF8.self) }
        if let question { query = String(decoding: value.dropFirst(question + 1), as: UTF8.self) }
    }

    private static func contentType(_ value: UnsafeRawBufferPointer) -> ContentType {
        if isGRPC(value) { return .grpc }
        if let codec = ConnectProtocol.codec(value, among: ["application/proto", "application/json"]) {
            return .connect(codec)
        }
        if let codec = ConnectProtocol.codec(value, among: ["application/connect+proto", "application/connect+json"]) {
            return .connectStream(codec)
        }
        return .other(String(decoding: value, as: UTF8.self))
    }

    /// `application/grpc`, optionally followed by `+proto` or `;params`
    /// (gRPC PROTOCOL-HTTP2 "Content-Type").
    private static func isGRPC(_ value: UnsafeRawBufferPointer) -> Bool {
        guard value.hasPrefix("application/grpc"), let base = value.baseAddress else { return false }
        // Sliced by pointer: the generic `dropFirst` costs ~50 instructions on every request.
        let rest = UnsafeRawBufferPointer(start: base + 16, count: value.count - 16)
        return rest.isEmpty || rest.equals("+proto") || rest.first == UInt8(ascii: ";")
    }
}

extension RequestHead {
    /// The head of an HTTP/1.1 request (or one replayed as an upgraded HTTP/2 stream), read
    /// through the same rules as HTTP/2's fields.
    init(method: String, uri: String, fields: some Sequence<(name: String, value: String)>, router: RPCRouter) {
        self.init()
        func add(_ name: String, _ value: String) {
            var name = name
            var value = value
            name.withUTF8 { name in
                value.withUTF8 { value in
                    self.add(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value), router: router)
                }
            }
        }
        add(":method", method)
        add(":path", uri)
        for (name, value) in fields { add(name.lowercased(), value) }
    }
}
