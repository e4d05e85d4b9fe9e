import NIOCore

/// How a method exchanges messages, and the code that serves it.
public enum RPCHandler: Sendable {
    /// One request message in; the handler answers with `call.respond(_:)` or
    /// `call.finish(_:)` exactly once, from any thread.
    case unary(@Sendable (_ request: ByteBuffer, _ call: ServerCall) -> Void)
    /// One request message in; any number of `call.send(_:)`, then `call.finish(_:)`.
    case serverStreaming(@Sendable (_ request: ByteBuffer, _ call: ServerCall) -> Void)
    /// Starts as soon as the request headers arrive; request messages reach the callbacks
    /// the handler installs with `call.onMessage(_:)` and `call.onRequestEnd(_:)`.
    case bidirectional(@Sendable (_ call: ServerCall) -> Void)
}

/// Maps a request's `:path` (`/package.Service/Method`) to its handler.
///
/// Built once before the server starts and read-only afterwards, so lookups need no lock.
/// Lookup compares the raw `:path` bytes against each route: with a few dozen routes this
/// beats hashing a freshly allocated `String` per request.
public struct RPCRouter: Sendable {
    /// A class so a call holds its route with one reference, not three.
    final class Route: Sendable {
        let path: String
        let pathBytes: [UInt8]
        let handler: RPCHandler
        /// Connect's JSON codec for the method's messages, when the schema is known.
        let transcoder: (any MessageTranscoder)?
        /// Marked `idempotency_level = NO_SIDE_EFFECTS`: Connect clients may call it with GET.
        let noSideEffects: Bool
        /// What a caller must hold, when the server checks tokens; nil: open to anyone.
        let requirement: AccessRequirement?
        /// Where the method's calls are counted; nil when nobody observes the server.
        let recorder: (any RPCMethodRecorder)?

        init(
            path: String, handler: RPCHandler, description: RPCMethodDescription?, requirement: AccessRequirement?,
            observer: (any RPCObserver)?
        ) {
            self.path = path
            self.pathBytes = Array(path.utf8)
            self.handler = handler
            self.transcoder = description?.transcoder
            self.noSideEffects = description?.noSideEffects ?? false
            self.requirement = requirement
            self.recorder = observer?.recorder(forMethod: path)
        }
    }

    private(set) var routes: [Route] = []
    private var descriptions: [String: RPCMethodDescription] = [:]
    /// The tokens callers must present; nil: no authentication (nothing is read or checked).
    private(set) var tokens: BearerTokens?
    private var requirements: (@Sendable (String) -> AccessRequirement?)?
    /// Told of every call and connection, and serves `GET /metrics`; nil: no metrics.
    private(set) var observer: (any RPCObserver)?

    public init() {}

    /// Registers `handler` for `path`; a later registration of the same path replaces it.
    public mutating func register(_ path: String, _ handler: RPCHandler) {
        routes.removeAll { $0.path == path }
        routes.append(
            Route(
                path: path, handler: handler, description: descriptions[path], requirement: requirements?(path),
                observer: observer))
    }

    /// Learns what the schema says of `methods` (routes registered before or after): their
    /// JSON transcoders and which Connect may serve to GET.
    public mutating func describe(_ methods: [RPCMethodDescription]) {
        for method in methods { descriptions[method.path] = method }
        rebuildRoutes()
    }

    /// Has every call present one of `tokens` (`authorization: Bearer <token>`) whose grants
    /// cover what `requirement` says of its method (routes registered before or after); a
    /// method it returns nil for stays open to anyone.
    public mutating func authenticate(
        with tokens: BearerTokens, requirement: @escaping @Sendable (String) -> AccessRequirement?
    ) {
        self.tokens = tokens
        requirements = requirement
        rebuildRoutes()
    }

    /// Reports every call and connection to `observer` (routes registered before or after), and
    /// serves its `GET /metrics`.
    public mutating func observe(with observer: any RPCObserver) {
        self.observer = observer
        rebuildRoutes()
    }

    /// Routes are immutable (a call holds its own): a new description, requirement or observer
    /// replaces them all.
    private mutating func rebuildRoutes() {
        routes = routes.map {
            Route(
                path: $0.path, handler: $0.handler, description: descriptions[$0.path],
                requirement: requirements?($0.path), observer: observer)
        }
    }

    /// Fully qualified service names (`package.Service`) that have at least one route.
    public var serviceNames: [String] {
        var seen = Set<String>()
        var names: [String] = []
        for route in routes {
            let parts = route.path.split(separator: "/")
            guard let service = parts.first.map(String.init), seen.insert(service).inserted else {
                continue
            }
            names.append(service)
        }
        return names
    }

    func routeIndex(for path: UnsafeRawBufferPointer) -> Int? {
        routes.firstIndex { path.equals($0.pathBytes) }
    }

    func route(at index: Int) -> Route { routes[index] }
}
