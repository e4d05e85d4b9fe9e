import ErdtreeRPC
import ErdtreeSync
import NIOCore

/// `grpc.health.v1.Health` (grpc/grpc doc/health-checking.md): `Check` answers at once,
/// `Watch` streams the status now and on every change until the client goes away.
///
/// The empty service name is the whole server; every registered service shares its
/// status, since one node serves them all or none.
public final class HealthService: Sendable {
    private struct Watcher {
        let call: ServerCall
        let service: String
    }

    private struct State {
        var status: ServingStatus
        var watchers: [ObjectIdentifier: Watcher] = [:]
    }

    private let services: Set<String>
    private let state: Locked<State>

    public init(services: [String], initial: ServingStatus = .serving) {
        self.services = Set(services).union([""])
        self.state = Locked(State(status: initial))
    }

    public var status: ServingStatus { state.withLock { $0.status } }

    /// Changes the status of every service and tells each watcher.
    public func setStatus(_ status: ServingStatus) {
        let watchers = state.withLock { state -> [Watcher] in
            guard state.status != status else { return [] }
            state.status = status
            return Array(state.watchers.values)
        }
        for watcher in watchers {
            watcher.call.send(HealthCheckResponse(status: status).encode(allocator: watcher.call.allocator))
        }
    }

    public func register(in router: inout RPCRouter) {
        router.register(
            "/grpc.health.v1.Health/Check",
            .unary { [self] request, call in
                answer(call) { () throws(RPCStatus) in
                    let service = try HealthCheckRequest(decoding: request).service
                    guard services.contains(service) else {
                        throw NodeError.unknownService(service).status
                    }
                    return HealthCheckResponse(status: status).encode(allocator: call.allocator)
                }
            })
        router.register(
            "/grpc.health.v1.Health/Watch",
            .serverStreaming { [self] request, call in
                let service: String
                do throws(RPCStatus) {
                    service = try HealthCheckRequest(decoding: request).service
                } catch {
                    call.finish(error)
                    return
                }
                let id = ObjectIdentifier(call)
                // An unknown service is not an error for Watch: it reports SERVICE_UNKNOWN and
                // keeps watching, as the spec asks.
                let known = services.contains(service)
                let current = state.withLock { state -> ServingStatus in
                    if known { state.watchers[id] = Watcher(call: call, service: service) }
                    return state.status
                }
                call.onCancel { [self] in _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
                call.send(
                    HealthCheckResponse(status: known ? current : .serviceUnknown).encode(allocator: call.allocator))
            })
    }

    /// Ends every Watch stream with OK, for shutdown.
    public func finishWatchers() {
        let watchers = state.withLock { state -> [Watcher] in
            defer { state.watchers.removeAll() }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.call.finish(.ok) }
    }
}
