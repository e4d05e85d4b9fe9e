import ErdtreeRPC
import ErdtreeSync
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A slave's link to its master: dials `master.address`, opens `Replicate`, says Hello with its
/// log's replication id and last LSN, and has a `Follower` write every entry the master sends to
/// its own engine (at the master's LSN), acking its applied and durable LSNs after each batch and
/// each heartbeat. A dropped stream is redialled with capped exponential backoff and jitter,
/// always from the LSN the slave's own log has reached (docs/replication.md).
public final class Replicator: Sendable {
    /// Backoff between dial attempts: doubles from `firstRetry` up to `maxRetry`, each wait
    /// drawn from its upper half so that many slaves do not redial in step.
    static let firstRetry = Duration.milliseconds(100)
    static let maxRetry = Duration.seconds(5)

    private let master: NodeConfig.Master
    private let engine: KVEngine
    private let group: any EventLoopGroup
    private let slaveID: String
    private let logger: Logger
    private let state = Locked(State())
    private let masterLSNValue = Atomic<UInt64>(0)
    private let lastContactMsValue = Atomic<Int64>(0)
    private let sessions = Atomic<UInt64>(0)
    private let fullResyncsValue = Atomic<UInt64>(0)

    private struct State {
        var stopped = false
        var task: Task<Void, Never>?
        var call: ClientCall?
        var client: RPCClient?
        var firstSync: (@Sendable () -> Void)?
        var redirect: (@Sendable (String) -> Void)?
        var promote: (@Sendable (UInt64) -> Void)?
        var synced = false
        var connected = false
    }

    /// Built by a slave's `ServerNode`, which calls `start` once it serves and `stop` when it stops.
    init(master: NodeConfig.Master, engine: KVEngine, group: any EventLoopGroup, slaveID: String, logger: Logger) {
        self.master = master
        self.engine = engine
        self.group = group
        self.slaveID = slaveID
        var logger = logger
        logger[metadataKey: "master"] = "\(master.address)"
        self.logger = logger
    }

    /// The master's address, as configured.
    public var masterAddress: String { master.address }

    /// The master's last LSN as of the last message from it; 0 before the first.
    public var masterLSN: UInt64 { masterLSNValue.load(ordering: .relaxed) }

    /// When the master was last heard from (Unix ms); 0 if never.
    public var lastContactMs: Int64 { lastContactMsValue.load(ordering: .relaxed) }

    /// Times this replicator dialled its master again after its first session (metrics).
    public var reconnects: UInt64 { max(sessions.load(ordering: .relaxed), 1) - 1 }

    /// Full resyncs the master asked this replicator for (metrics).
    public var fullResyncs: UInt64 { fullResyncsValue.load(ordering: .relaxed) }

    func countFullResync() { fullResyncsValue.add(1, ordering: .relaxed) }

    /// Whether a stream to the master is open now.
    public var isConnected: Bool { state.withLock { $0.connected } }

    /// `body` runs once, when the slave has first caught up with the master.
    func onFirstSync(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.firstSync = body }
    }

    /// `body` runs with the address a refusal of the stream named as the master (the node dialled
    /// is not the master, but knows which is): the node's role manager follows it.
    func onRedirect(_ body: @escaping @Sendable (String) -> Void) {
        state.withLock { $0.redirect = body }
    }

    /// `body` runs when the master asks this slave to take over at an LSN (a switchover).
    func onPromote(_ body: @escaping @Sendable (UInt64) -> Void) {
        state.withLock { $0.promote = body }
    }

    func start() {
        let task = Task { [self] in await run() }
        state.withLock { $0.task = task }
    }

    func stop() async {
        let (task, call, client) = state.withLock { state in
            state.stopped = true
            return (state.task, state.call, state.client)
        }
        call?.cancel()
        await client?.close()
        task?.cancel()
        await task?.value
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run() async {
        var retry = Self.firstRetry
        while !stopped {
            let status = await session()
            state.withLock { $0.connected = false }
            if stopped { return }
            if let master = status.metadata[NodeError.masterHeader], master != self.master.address,
                let redirect = state.withLock({ $0.redirect })
            {
                logger.warning(
                    "the node dialled is not the master; following the one it names",
                    metadata: ["new_master": "\(master)", "message": "\(status.message)"])
                redirect(master)
            }
            if status.code == .ok {
                retry = Self.firstRetry
                logger.info("replication stream ended; redialling")
            } else {
                logger.warning(
                    "replication stream failed; redialling",
                    metadata: [
                        "status": "\(status.code)", "message": "\(status.message)", "retry_in": "\(retry)",
                    ])
            }
            let jittered = retry / 2 + retry / 2 * Double.random(in: 0...1)
            try? await Task.sleep(for: jittered)
            retry = min(retry * 2, Self.maxRetry)
        }
    }

    /// One connection: dial, Hello, follow the stream until it ends. Returns how it ended.
    private func session() async -> RPCStatus {
        sessions.add(1, ordering: .relaxed)
        let address: SocketAddressSpec
        do {
            address = try SocketAddressSpec(parsing: master.address)
        } catch {
            return NodeError.badMasterAddress(error).status
        }
        var metadata: [HTTPField] = []
        if let path = master.tokenFile {
            do throws(ConfigError) {
                let token = try TokenFiles.read(path, key: "master.token_file", source: ServerNode.configSource)
                metadata.append(HTTPField("authorization", "Bearer " + String(decoding: token, as: UTF8.self)))
            } catch {
                return NodeError.badMasterToken(error).status
            }
        }
        let client: RPCClient
        do {
            client = try await RPCClient.connect(
                host: address.host, port: address.port, group: group, metadata: metadata, tls: master.tls)
        } catch {
            return NodeError.masterUnreachable(address: master.address, reason: "\(error)").status
        }
        defer { Task { await client.close() } }
        let follower = Follower(replicator: self, engine: engine, logger: logger)
        let status: RPCStatus = await withCheckedContinuation { continuation in
            let call = client.makeCall(
                path: "/erdtree.v1.Replication/Replicate",
                onMessage: { message in follower.received(message) },
                onFinish: { status in continuation.resume(returning: status) })
            follower.call = call
            let proceed = state.withLock { state in
                guard !state.stopped else { return false }
                state.call = call
                state.client = client
                state.connected = true
                return true
            }
            guard proceed else {
                call.cancel()
                return
            }
            let lastLSN = engine.lastLSN
            let hello = ReplicateRequest.hello(
                Hello(
                    replicationID: lastLSN == 0 ? "" : engine.replicationID, lastLSN: lastLSN, slaveID: slaveID,
                    advertiseAddress: slaveID,
                    heartbeatIntervalMs: UInt32(clamping: ConfigUnits.milliseconds(master.syncInterval)),
                    epochs: engine.epochStarts))
            // A master that falls silent (network cut, frozen process) is given up on after a
            // few missed heartbeats, and redialled.
            let silence = max(master.syncInterval * 4, .seconds(1))
            heard(masterLSN: masterLSN)
            let watchdog = call.eventLoop.scheduleRepeatedTask(
                initialDelay: TimeAmount(silence), delay: TimeAmount(silence)
            ) { [self] task in
                if WallClock.nowMs() - lastContactMs > Int64(silence / .milliseconds(1)) {
                    logger.warning("no word from the master in \(silence); redialling")
                    task.cancel()
                    call.cancel()
                }
            }
            follower.watchdog = watchdog
            logger.info("dialled the master", metadata: ["last_lsn": "\(lastLSN)"])
            call.send(hello.encode(allocator: client.channel.allocator))
        }
        follower.watchdog?.cancel()
        state.withLock { state in
            state.call = nil
            state.client = nil
        }
        return status
    }

    // MARK: For the follower

    func heard(masterLSN: UInt64) {
        masterLSNValue.store(masterLSN, ordering: .relaxed)
        lastContactMsValue.store(WallClock.nowMs(), ordering: .relaxed)
    }

    func promoteRequested(lastLSN: UInt64) {
        let body = state.withLock { $0.promote }
        logger.warning("the master asks this slave to take over", metadata: ["last_lsn": "\(lastLSN)"])
        body?(lastLSN)
    }

    func caughtUp() {
        let body: (@Sendable () -> Void)? = state.withLock { state in
            guard !state.synced else { return nil }
            state.synced = true
            return state.firstSync
        }
        if let body {
            logger.info("first sync with the master complete; serving reads")
            body()
        }
    }
}
