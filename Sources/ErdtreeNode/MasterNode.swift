import ErdtreeRPC
import ErdtreeStorage
import Logging
import NIOCore
import NIOPosix

/// A master: the store, the services over it, and the server that exposes them.
///
/// `start()` binds and returns; `stop()` drains. The CLI owns signals and the process.
public final class MasterNode: Sendable {
    public let config: NodeConfig
    public let kv: KVStoreService
    public let health: HealthService
    private let server: RPCServer
    private let logger: Logger

    public init(config: NodeConfig, group: any EventLoopGroup, logger: Logger) {
        self.config = config
        self.logger = logger
        let store = KeyValueStore()
        kv = KVStoreService(store: store, limits: config.limits)

        var router = RPCRouter()
        kv.register(in: &router)
        AdminService(kv: kv).register(in: &router)
        // Health answers for every service registered so far and for itself.
        let served = router.serviceNames + ["grpc.health.v1.Health"]
        health = HealthService(services: served)
        health.register(in: &router)
        ReflectionService().register(in: &router)

        server = RPCServer(
            router: router, limits: RPCServer.Limits(maxMessageBytes: config.limits.maxMessageBytes),
            group: group, logger: logger)
    }

    /// Binds `server.address:server.port` and starts serving.
    /// - Returns: the bound address (the real port when the config says 0).
    public func start() async throws -> SocketAddress {
        let address = try await server.start(host: config.server.address, port: config.server.port)
        logger.info("master serving on \(address)")
        return address
    }

    /// Reports NOT_SERVING, sends GOAWAY on every connection and waits for in-flight calls.
    public func stop(gracePeriod: Duration = .seconds(10)) async {
        health.setStatus(.notServing)
        health.finishWatchers()
        await server.shutdownGracefully(gracePeriod: gracePeriod)
        logger.info("master stopped")
    }
}
