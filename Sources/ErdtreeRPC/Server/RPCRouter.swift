import CProtobufC
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
        /// The request and response message types, when known: Connect's JSON codec needs them.
        let messages: MessageTypes?
        /// Marked `idempotency_level = NO_SIDE_EFFECTS`: Connect clients may call it with GET.
        let noSideEffects: Bool

        init(path: String, handler: RPCHandler, messages: MessageTypes?, noSideEffects: Bool) {
            self.path = path
            self.pathBytes = Array(path.utf8)
            self.handler = handler
            self.messages = messages
            self.noSideEffects = noSideEffects
        }
    }

    /// A method's request and response descriptors (static protobuf-c data, never written).
    struct MessageTypes: @unchecked Sendable {
        let input: ProtoJSON.Descriptor
        let output: ProtoJSON.Descriptor
    }

    private(set) var routes: [Route] = []
    private var messageTypes: [String: MessageTypes] = [:]
    private var sideEffectFree: Set<String> = []

    public init() {}

    /// Registers `handler` for `path`; a later registration of the same path replaces it.
    public mutating func register(_ path: String, _ handler: RPCHandler) {
        routes.removeAll { $0.path == path }
        routes.append(route(path, handler))
    }

    private func route(_ path: String, _ handler: RPCHandler) -> Route {
        Route(path: path, handler: handler, messages: messageTypes[path], noSideEffects: sideEffectFree.contains(path))
    }

    /// Marks methods whose proto says `idempotency_level = NO_SIDE_EFFECTS` (protobuf-c's
    /// descriptors do not carry method options), so Connect serves them to GET too.
    public mutating func markNoSideEffects(_ paths: [String]) {
        sideEffectFree.formUnion(paths)
        routes = routes.map { route($0.path, $0.handler) }
    }

    /// Learns the message types of every method of `service` (a protobuf-c generated service
    /// descriptor), for routes registered before or after; Connect can then serve them as JSON.
    public mutating func describe(_ service: ProtobufCServiceDescriptor) {
        let name = String(cString: service.name)
        for method in UnsafeBufferPointer(start: service.methods, count: Int(service.n_methods)) {
            guard let input = method.input, let output = method.output else { continue }
            messageTypes["/\(name)/\(String(cString: method.name))"] = MessageTypes(input: input, output: output)
        }
        routes = routes.map { route($0.path, $0.handler) }
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
