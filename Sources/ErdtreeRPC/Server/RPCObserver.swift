import NIOCore

/// The protocol a call spoke, as metrics label it.
public enum RPCCallProtocol: Int, Sendable, CaseIterable {
    case grpc
    case connect
    /// Connect unary over GET (the message in the query).
    case connectGet

    /// The label value: `grpc`, `connect`, `connect_get`.
    public var label: String {
        switch self {
        case .grpc: "grpc"
        case .connect: "connect"
        case .connectGet: "connect_get"
        }
    }
}

/// The HTTP version a connection settled on, as metrics label it.
public enum RPCConnectionProtocol: Int, Sendable, CaseIterable {
    case http1
    case http2

    public var label: String { self == .http1 ? "http1" : "http2" }
}

/// Records the outcome of the calls of one method (or of every call no route took).
///
/// Made once per route when the router learns of its observer, so a call reaches its
/// counters through its route with no lookup. Called on the call's event loop, once per call
/// that ends with a status (answered, refused, failed, or cancelled by its client).
public protocol RPCMethodRecorder: Sendable {
    func finished(code: RPCStatus.Code, protocol: RPCCallProtocol, nanoseconds: Int64)
}

/// What a server reports to its node's metrics, and the page it serves them on: the server
/// knows calls and connections but no metrics library, the node owns the registry.
public protocol RPCObserver: Sendable {
    /// The recorder of `path`'s calls; asked once per route, when the router is built.
    func recorder(forMethod path: String) -> any RPCMethodRecorder
    /// The recorder of calls to paths no route serves (their path must never become a label).
    var unroutedRecorder: any RPCMethodRecorder { get }
    /// A connection settled on `kind` (or was upgraded to it), on its event loop.
    func connectionOpened(_ kind: RPCConnectionProtocol)
    /// A connection that `connectionOpened` reported closed or left `kind`.
    func connectionClosed(_ kind: RPCConnectionProtocol)
    /// Whether `GET /metrics` needs a bearer token (any known one).
    var metricsNeedToken: Bool { get }
    /// The body of `GET /metrics` (Prometheus text format 0.0.4). Called on an event loop, so
    /// it must be quick: it reads figures kept up to date, it never walks the data.
    func exposition() -> [UInt8]
}

extension RPCObserver {
    /// The `content-type` of `exposition()`.
    public static var expositionContentType: String { "text/plain; version=0.0.4; charset=utf-8" }
}
