import NIOHTTP1

/// How a response starts, whatever the transport; each transport turns it into its own head.
enum ResponseHead: Equatable {
    /// gRPC: 200 `application/grpc`; messages and then trailers follow.
    case grpc
    /// gRPC trailers-only: the status in the one header block, no body. Boxed, as errors are
    /// rare: it keeps every `Action` smaller, and each costs a destroy.
    indirect case grpcTrailersOnly(RPCStatus, advertiseEncodings: Bool)
    /// Connect streaming: 200 and the stream's content type; envelopes follow, the end-stream
    /// envelope last.
    case connectStream(ConnectStreaming.Options)
    /// An answer whose body is all queued already: Connect unary, and refusals.
    case whole(WholeResponse)
}

/// The head of a response sent in one piece.
struct WholeResponse: Equatable {
    var status: HTTPResponseStatus
    /// nil: a bare status with no body (an HTTP/2 refusal of a request that is not gRPC).
    var contentType: String?
    var contentEncoding: String?
    /// The `allow` field of a 405.
    var allow: String?
    /// HTTP/1.1: the connection closes after this answer.
    var closesConnection = false
    /// A Connect error's metadata, sent as response headers.
    var metadata: [String: String] = [:]
}

/// What the transport writes when a response body has no more bytes queued.
enum ResponseBodyChunk: Equatable {
    /// Nothing queued yet; the stream resumes when the call has more.
    case deferred
    /// `count` bytes were copied; `end` says whether the body is complete and how.
    case data(count: Int, end: ResponseEnd?)
}

enum ResponseEnd: Equatable {
    /// gRPC: trailers carrying the status.
    case trailers(RPCStatus)
    /// Everything else: the body just ends.
    case endOfBody
}
