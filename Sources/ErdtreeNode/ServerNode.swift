import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import Logging
import NIOCore
import NIOPosix

/// A master or a slave: the write-ahead log, the store rebuilt from it, the services over them,
/// and the server that exposes them. A master also serves `Replication/Replicate`; a slave
/// refuses writes and follows its master through a `Replicator`.
///
/// `init` recovers the log (so a node with a corrupt log never binds its port); `start()`
/// binds and returns; `stop()` drains and closes the log. The CLI owns signals and the process.
public final class ServerNode: Sendable {
    public let config: NodeConfig
    public let role: Role
    public let kv: KVStoreService
    public let health: HealthService
    public let recovery: WALRecoveryReport
    public let sweeper: ExpirySweeper
    public let compactor: Compactor
    /// The master's side of replication; nil on a slave.
    public let replication: ReplicationHub?
    /// The slave's link to its master; nil on a master.
    public let replicator: Replicator?
    private let wal: WriteAheadLog
    private let server: RPCServer
    private let logger: Logger

    /// Opens and replays the WAL in `config.wal.directory`, then builds the services.
    /// - Throws: `WALError` when the log is corrupt (naming file, offset and LSN) or cannot
    ///   be read or created.
    public init(config: NodeConfig, role: Role = .master, group: any EventLoopGroup, logger: Logger) throws {
        self.config = config
        self.role = role
        self.logger = logger
        let store = Self.store(config.storage)
        (wal, recovery) = try WriteAheadLog.open(Self.walConfiguration(config.wal), logger: logger) {
            Self.replay($0, at: $1, into: store)
        }
        let master = role == .slave ? config.master : nil
        let hub = master == nil ? ReplicationHub(wal: wal, store: store, logger: logger) : nil
        kv = KVStoreService(
            store: store, wal: wal, limits: config.limits, masterAddress: master?.address, replicationHub: hub,
            replication: config.replication)
        sweeper = ExpirySweeper(store: store)
        sweeper.start(on: group.next())
        compactor = Compactor(
            store: store, wal: wal, retentionBytes: config.wal.retentionBytes,
            minDeadBytes: config.wal.maxFileSizeBytes, logger: logger)
        compactor.start(on: group.next())

        var router = RPCRouter()
        kv.register(in: &router)
        if let master {
            replication = nil
            replicator = Replicator(
                master: master, kv: kv, group: group, slaveID: Self.slaveID(config.server), logger: logger)
        } else {
            hub?.register(in: &router)
            replication = hub
            replicator = nil
        }
        AdminService(kv: kv, sweeper: sweeper, compactor: compactor, replication: replication, replicator: replicator)
            .register(in: &router)
        // Health answers for every service registered so far and for itself.
        let served = router.serviceNames + ["grpc.health.v1.Health"]
        health = HealthService(services: served)
        health.register(in: &router)
        // A slave serves reads only once its first sync with the master completed.
        if let replicator {
            health.setStatus(.notServing)
            replicator.onFirstSync { [health] in health.setStatus(.serving) }
        }
        ReflectionService().register(in: &router)
        // What the proto says of each method: its message types, for Connect's JSON codec, and
        // `idempotency_level = NO_SIDE_EFFECTS`, which Connect serves to GET.
        router.describe(MethodTable.embedded.descriptions)

        server = RPCServer(
            router: router,
            limits: RPCServer.Limits(
                maxMessageBytes: config.limits.maxMessageBytes, idleTimeout: config.server.idleTimeout),
            group: group, logger: logger, isServing: { [health] in health.status == .serving })
    }

    /// Binds `server.address:server.port` and starts serving.
    /// - Returns: the bound address (the real port when the config says 0).
    public func start() async throws -> SocketAddress {
        let address = try await server.start(host: config.server.address, port: config.server.port)
        logger.info("\(role) serving on \(address)")
        replicator?.start()
        return address
    }

    /// Reports NOT_SERVING, sends GOAWAY on every connection, waits for in-flight calls,
    /// then writes and syncs what the WAL still holds.
    public func stop(gracePeriod: Duration = .seconds(10)) async {
        health.setStatus(.notServing)
        health.finishWatchers()
        await replicator?.stop()
        replication?.stop()
        await server.shutdownGracefully(gracePeriod: gracePeriod)
        sweeper.stop()
        compactor.stop()
        wal.close()
        logger.info("\(role) stopped")
    }

    /// An empty store bounded by `storage.max_entries` under `storage.eviction_policy`.
    ///
    /// CLOCK runs per shard, so a small bound gets fewer shards: at least 16 values per
    /// shard (up to the default 64 shards) keeps the approximation of LRU meaningful.
    static func store(_ storage: NodeConfig.Storage) -> KeyValueStore {
        var shards = 64
        while shards > 1 && storage.maxEntries / shards < 16 { shards /= 2 }
        let policy: EvictionPolicy =
            switch storage.evictionPolicy {
            case .lru: .lru
            case .noeviction: .noeviction
            }
        return KeyValueStore(shardCount: shards, maxResidentValues: storage.maxEntries, evictionPolicy: policy)
    }

    static func walConfiguration(_ wal: NodeConfig.WAL) -> WALConfiguration {
        let policy: WALSyncPolicy =
            switch wal.syncInterval {
            case .always: .always
            case .interval(let interval): .interval(interval)
            }
        return WALConfiguration(directory: wal.directory, syncPolicy: policy, maxFileSizeBytes: wal.maxFileSizeBytes)
    }

    /// Applies one recovered record. A set whose expiry has passed acts as a delete: it
    /// still replaces what the key held before, so an older value cannot come back.
    /// Replay goes through the same `set` as live writes, so it evicts as it goes and
    /// memory stays within `storage.max_entries` during recovery. Under noeviction it
    /// applies every logged key even past the bound (they were acknowledged).
    static func replay(_ record: WALRecord, at location: WALLocation, into store: KeyValueStore) {
        let key = StoreKey(record.key)
        let nowMs = WallClock.nowMs()
        switch record.op {
        case .set where record.expiresAtMs != 0 && record.expiresAtMs <= nowMs:
            store.delete(key, lsn: record.lsn, nowMs: nowMs)
        case .set:
            store.set(
                key, value: record.value, lsn: record.lsn, expiresAtMs: record.expiresAtMs,
                location: DiskLocation(location))
        case .delete:
            store.delete(key, lsn: record.lsn, nowMs: nowMs)
        }
    }
}

extension DiskLocation {
    /// The store's copy of a WAL location (the store does not depend on the WAL).
    init(_ location: WALLocation) {
        self.init(segment: location.segment, offset: location.offset, length: location.length)
    }
}

extension WALLocation {
    init(_ location: DiskLocation) {
        self.init(segment: location.segment, offset: location.offset, length: location.length)
    }
}

extension ServerNode {
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
