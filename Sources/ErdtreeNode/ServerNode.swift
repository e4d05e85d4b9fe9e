import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeWAL
import Logging
import NIOCore
import NIOPosix

/// A master or a slave: the engine (the write-ahead log and the store rebuilt from it), the
/// services over it, and the server that exposes them. `role` is where the node starts; the
/// `RoleManager` changes it at run time (Admin.Promote, Follow, Failover, fencing). A master
/// serves `Replication/Replicate`; a slave refuses writes and follows its master through a
/// `Replicator`.
///
/// `init` opens the engine, which recovers the log (so a node with a corrupt log never binds its
/// port); `start()` binds and returns; `stop()` drains and closes the engine. The CLI owns
/// signals and the process.
public final class ServerNode: Sendable {
    public let config: NodeConfig
    public let role: Role
    public let engine: KVEngine
    public let kv: KVStoreService
    public let health: HealthService
    public let sweeper: ExpirySweeper
    public let compactor: Compactor
    /// The master's side of replication (it admits slaves only while this node is the master).
    public let replication: ReplicationHub
    /// What the node is now, and every change of it.
    public let roles: RoleManager
    /// What decides the role of an `erdtree node` (etcd); nil for a static role.
    let coordinator: (any Coordinator)?
    /// The slave's link to its master; nil while the node is the master.
    public var replicator: Replicator? { roles.replicator }
    /// What recovery found when the engine opened the log.
    public var recovery: WALRecoveryReport { engine.recovery }
    /// What `GET /metrics` serves.
    public let metrics: NodeMetrics
    /// Internal for the connection fuzz harness, which builds its channels with it.
    let server: RPCServer
    /// The secrets of `auth.tokens`, re-read by `reload()`; nil when auth is off.
    private let tokens: BearerTokens?
    /// The certificate `server.tls` serves, swapped by `reload()`.
    private let serverTLS: ServerTLSContext?
    private let logger: Logger

    /// Reads the token and TLS files, opens the engine on `config.wal.directory` (replaying the
    /// log), then builds the services.
    /// - Throws: `ConfigError` when a token file cannot be read or holds no usable token;
    ///   `TLSError` naming a certificate, key or CA file of `server.tls`, `master.tls` or
    ///   `ha.etcd.tls` that cannot be used (both checked before the log is opened); `WALError`
    ///   when the log is corrupt (naming file, offset and LSN) or cannot be read or created.
    public init(config: NodeConfig, role: Role = .master, group: any EventLoopGroup, logger: Logger) throws {
        self.config = config
        self.role = role
        self.logger = logger
        tokens = try config.auth.map { BearerTokens(try TokenFiles.load($0, source: Self.configSource)) }
        serverTLS = try config.server.tls.map { files throws(TLSError) in try ServerTLSContext(files) }
        try config.master?.tls?.validate()
        try config.ha?.etcdTLS?.validate()
        metrics = NodeMetrics(metricsNeedToken: config.auth?.metrics == .token)
        engine = try KVEngine(
            storage: config.storage, wal: config.wal, walObserver: metrics.walObserver, logger: logger)
        let configured: RoleManager.Role =
            switch role {
            case .master: .master
            case .slave: .slave(master: config.master?.address ?? "")
            case .node: .electing
            }
        // A coordinated node's role is etcd's to decide at every start, never a file's.
        let saved = role == .node ? nil : try RoleFile.read(walDirectory: config.wal.directory)
        if let saved, saved != configured {
            logger.warning(
                "starting in the role saved at run time, not the config's (delete the file to use the config's)",
                metadata: [
                    "saved": "\(saved)", "config": "\(configured)",
                    "file": "\(RoleFile.path(walDirectory: config.wal.directory))",
                ])
        }
        let initialRole = saved ?? configured
        let hub = ReplicationHub(engine: engine, logger: logger)
        // Only a master serves from the moment its port is bound. A slave (or a node etcd has not
        // placed yet) says NOT_SERVING from the first connection on, not only once `start` has
        // run: a health check in between would send readers to a store still empty.
        let health = HealthService(
            services: Self.servedServices, initial: initialRole == .master ? .serving : .notServing)
        self.health = health
        roles = RoleManager(
            initialRole: initialRole, engine: engine, hub: hub, group: group,
            masterLink: config.master ?? NodeConfig.Master(address: "", syncInterval: .milliseconds(100)),
            server: config.server, advertise: config.ha?.advertise, walDirectory: config.wal.directory, logger: logger,
            serving: { [health] serving in health.setStatus(serving ? .serving : .notServing) })
        kv = KVStoreService(
            engine: engine, limits: config.limits, roles: roles, replicationHub: hub, replication: config.replication)
        coordinator = config.ha.map { [roles, engine] ha in
            EtcdCoordinator(ha: ha, roles: roles, engine: engine, group: group, logger: logger)
        }
        sweeper = ExpirySweeper(engine: engine)
        sweeper.start(on: group.next())
        compactor = Compactor(
            engine: engine, retentionBytes: config.wal.retentionBytes, minDeadBytes: config.wal.maxFileSizeBytes,
            logger: logger)
        compactor.start(on: group.next())

        var router = RPCRouter()
        kv.register(in: &router)
        hub.register(in: &router)
        replication = hub
        let serverStatistics = RPCServer.Statistics()
        let admin = AdminService(
            engine: engine, sweeper: sweeper, compactor: compactor, roles: roles, serverStatistics: serverStatistics)
        admin.register(in: &router)
        metrics.attach(admin: admin)
        health.register(in: &router)
        ReflectionService().register(in: &router)
        // What the proto says of each method: its message types, for Connect's JSON codec, and
        // `idempotency_level = NO_SIDE_EFFECTS`, which Connect serves to GET.
        router.describe(MethodTable.embedded.descriptions)
        if let tokens {
            router.authenticate(with: tokens, requirement: AccessPolicy.requirement(for:))
        }
        router.observe(with: metrics)

        server = RPCServer(
            router: router,
            limits: RPCServer.Limits(
                maxMessageBytes: config.limits.maxMessageBytes, idleTimeout: config.server.idleTimeout,
                maxConnections: config.server.maxConnections, maxConcurrentStreams: config.server.maxConcurrentStreams,
                maxHeaderListBytes: config.server.maxHeaderListBytes,
                maxBufferedBytesPerConnection: config.server.maxBufferedBytesPerConnection,
                maxBufferedBytes: config.server.maxBufferedBytes, handshakeTimeout: config.server.handshakeTimeout),
            statistics: serverStatistics, tls: serverTLS, group: group, logger: logger,
            isServing: { [health] in health.status == .serving })
    }

    /// Binds `server.address:server.port` and starts serving.
    /// - Returns: the bound address (the real port when the config says 0).
    public func start() async throws -> SocketAddress {
        let address = try await server.start(host: config.server.address, port: config.server.port)
        logger.info("\(roles.isMaster ? "master" : "slave") serving on \(address)")
        // A slave serves reads only once its first sync with the master completed.
        roles.start(port: address.port ?? config.server.port)
        coordinator?.start()
        return address
    }

    /// Re-reads what the node reads from files at run time (SIGHUP, as often as it comes): the
    /// token files and the TLS certificate. A file that cannot be used is logged (naming files,
    /// never secrets) and the node keeps what it had, so a botched rotation never takes a
    /// serving node down.
    public func reload() {
        if let tokens, let auth = config.auth {
            do {
                tokens.replace(with: try TokenFiles.load(auth, source: Self.configSource))
                logger.info("reloaded tokens", metadata: ["tokens": "\(tokens.names.joined(separator: ","))"])
            } catch {
                logger.error("kept the previous tokens: \(error)")
            }
        }
        if let serverTLS {
            do {
                try serverTLS.reload()
                logger.info("reloaded the TLS certificate", metadata: ["cert_file": "\(serverTLS.files.certFile)"])
            } catch {
                logger.error(
                    "TLS reload failed; still serving the previous certificate", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Reports NOT_SERVING, sends GOAWAY on every connection, waits for in-flight calls,
    /// then has the engine write and sync what the WAL still holds.
    public func stop(gracePeriod: Duration = .seconds(10)) async {
        health.setStatus(.notServing)
        health.finishWatchers()
        await coordinator?.stop()
        await roles.stop()
        replication.stop()
        await server.shutdownGracefully(gracePeriod: gracePeriod)
        sweeper.stop()
        compactor.stop()
        engine.close()
        logger.info("node stopped")
    }
}

extension ServerNode {
    /// How errors about files a config names refer to it (the node is not told its path).
    static let configSource = "config"

    /// What Health answers for: every service a node registers, and itself.
    static let servedServices = [
        KVStoreService.serviceName, ReplicationHub.serviceName, "erdtree.v1.Admin", "grpc.health.v1.Health",
    ]

    /// How a slave names itself to its master (`ListSlaves`, `RemoveSlave`): the address it
    /// serves on, or, when it listens on every interface (a container, a host with several),
    /// its hostname, which tells apart slaves that share one config file.
    static func slaveID(_ server: NodeConfig.Server, hostname: String = currentHostname()) -> String {
        let wildcard = ["0.0.0.0", "::", "[::]"].contains(server.address)
        let host = wildcard && !hostname.isEmpty ? hostname : server.address
        return "\(host):\(server.port)"
    }

    static func currentHostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
