import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A slave's link to its master: dials `master.address`, opens `Replicate`, says Hello with its
/// log's replication id and last LSN, and writes every entry the master sends to its own WAL
/// (with the master's LSN) and store, acking its applied and durable LSNs after each batch and
/// each heartbeat. A dropped stream is redialled with capped exponential backoff and jitter,
/// always from the LSN the slave's own log has reached.
public final class Replicator: Sendable {
    /// Backoff between dial attempts: doubles from `firstRetry` up to `maxRetry`, each wait
    /// drawn from its upper half so that many slaves do not redial in step.
    static let firstRetry = Duration.milliseconds(100)
    static let maxRetry = Duration.seconds(5)

    private let master: NodeConfig.Master
    private let kv: KVStoreService
    private let group: any EventLoopGroup
    private let slaveID: String
    private let logger: Logger
    private let state = Mutex(State())
    private let masterLSNValue = Atomic<UInt64>(0)
    private let lastContactMsValue = Atomic<Int64>(0)

    private struct State {
        var stopped = false
        var task: Task<Void, Never>?
        var call: ClientCall?
        var client: RPCClient?
        var firstSync: (@Sendable () -> Void)?
        var synced = false
        var connected = false
    }

    init(master: NodeConfig.Master, kv: KVStoreService, group: any EventLoopGroup, slaveID: String, logger: Logger) {
        self.master = master
        self.kv = kv
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

    /// Whether a stream to the master is open now.
    public var isConnected: Bool { state.withLock { $0.connected } }

    /// `body` runs once, when the slave has first caught up with the master.
    func onFirstSync(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.firstSync = body }
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
        let address: SocketAddressSpec
        do {
            address = try SocketAddressSpec(parsing: master.address)
        } catch {
            return RPCStatus(.invalidArgument, "master.address: \(error)")
        }
        let client: RPCClient
        do {
            client = try await RPCClient.connect(host: address.host, port: address.port, group: group)
        } catch {
            return RPCStatus(.unavailable, "cannot connect to the master at \(master.address): \(error)")
        }
        defer { Task { await client.close() } }
        let follower = Follower(replicator: self, kv: kv, logger: logger)
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
            let wal = kv.wal
            let hello = ReplicateRequest.hello(
                replicationID: wal.lastLSN == 0 ? "" : wal.replicationID, lastLSN: wal.lastLSN, slaveID: slaveID,
                advertiseAddress: slaveID,
                heartbeatIntervalMs: UInt32(
                    clamping: master.syncInterval.components.seconds * 1000
                        + master.syncInterval.components.attoseconds / 1_000_000_000_000_000))
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
            logger.info("dialled the master", metadata: ["last_lsn": "\(wal.lastLSN)"])
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

/// One stream's worth of following: checks and applies what the master sends.
///
/// Everything but durable acks runs on the connection's event loop: a batch is written to this
/// slave's WAL there (one `write`, no hand-off to the writer thread, whose only part is the
/// fsync), applied, and acked. Applied acks are coalesced to one per millisecond at most: under
/// a heavy write load each ack costs both nodes a loopback write and a wake-up.
private final class Follower: @unchecked Sendable {
    private let replicator: Replicator
    private let kv: KVStoreService
    private let logger: Logger
    var call: ClientCall?
    var watchdog: RepeatedTask?
    /// Event loop only.
    private var welcomed = false
    private var nextLSN: UInt64 = 0
    private var syncTarget: UInt64 = 0
    /// During a full resync: the snapshot so far, and batches that arrived before it was loaded.
    private var resync: (lsn: UInt64, records: [WALRecord], replicationID: String)?
    private var heldBatches: [[WALRecord]] = []
    private var ackScheduled = false
    private var scratch = CArena()
    private let failed = Atomic<Bool>(false)

    init(replicator: Replicator, kv: KVStoreService, logger: Logger) {
        self.replicator = replicator
        self.kv = kv
        self.logger = logger
    }

    func received(_ message: ByteBuffer) {
        let response: ReplicateResponse
        do throws(RPCStatus) {
            response = try ReplicateResponse(decoding: message, reusing: &scratch)
        } catch {
            fail("the master sent a message that does not decode: \(error.message)")
            return
        }
        switch response {
        case .welcome(let replicationID, let fullResync, let snapshotLSN, let masterLSN):
            welcome(
                replicationID: replicationID, fullResync: fullResync, snapshotLSN: snapshotLSN, masterLSN: masterLSN)
        case .batch(let entries, let masterLSN):
            guard welcomed else { return fail("the master sent a batch before its Welcome") }
            replicator.heard(masterLSN: masterLSN)
            if resync != nil {
                heldBatches.append(entries)
            } else {
                apply(entries)
            }
        case .snapshot(let snapshotLSN, let entries, let last):
            guard resync?.lsn == snapshotLSN else {
                return fail("the master sent a snapshot chunk for LSN \(snapshotLSN) outside a full resync")
            }
            resync?.records.append(contentsOf: entries)
            if last { loadSnapshot() }
        case .heartbeat(let masterLSN, _):
            replicator.heard(masterLSN: masterLSN)
            guard resync == nil else { return }
            ack()
            if kv.wal.lastLSN >= syncTarget && welcomed { replicator.caughtUp() }
        }
    }

    private func welcome(replicationID: String, fullResync: Bool, snapshotLSN: UInt64, masterLSN: UInt64) {
        guard !welcomed else { return fail("the master sent a second Welcome") }
        let wal = kv.wal
        if fullResync {
            logger.warning(
                """
                FULL RESYNC: the master cannot stream from this slave's position; its data will be replaced by \
                the master's snapshot
                """,
                metadata: [
                    "slave_last_lsn": "\(wal.lastLSN)", "slave_replication_id": "\(wal.replicationID)",
                    "master_replication_id": "\(replicationID)", "snapshot_lsn": "\(snapshotLSN)",
                ])
            welcomed = true
            resync = (snapshotLSN, [], replicationID)
            syncTarget = masterLSN
            replicator.heard(masterLSN: masterLSN)
            wal.onDurable { [weak self] _ in self?.ack() }
            return
        }
        if replicationID != wal.replicationID {
            do throws(WALError) {
                try wal.adoptReplicationID(replicationID)
                logger.info("empty log joined the master's history", metadata: ["replication_id": "\(replicationID)"])
            } catch {
                return fail("cannot take the master's history \(replicationID): \(error)")
            }
        }
        welcomed = true
        // With an interval sync policy durability trails the appends: ack again as it advances,
        // so a master waiting for durable acks (min_acks) hears at once.
        wal.onDurable { [weak self] _ in self?.ack() }
        nextLSN = wal.lastLSN + 1
        syncTarget = masterLSN
        replicator.heard(masterLSN: masterLSN)
        logger.info(
            "streaming from the master", metadata: ["from_lsn": "\(nextLSN)", "master_lsn": "\(masterLSN)"])
        if wal.lastLSN >= masterLSN { replicator.caughtUp() }
    }

    private func apply(_ entries: [WALRecord]) {
        guard let last = entries.last else { return }
        for (index, entry) in entries.enumerated() where entry.lsn != nextLSN + UInt64(index) {
            return fail("the master sent LSN \(entry.lsn) where LSN \(nextLSN + UInt64(index)) was due")
        }
        nextLSN = last.lsn + 1
        let store = kv.store
        let nowMs = WallClock.nowMs()
        do throws(WALError) {
            try kv.wal.append(replicated: entries) { index, location in
                Self.apply(entries[index], at: location, to: store, nowMs: nowMs)
            }
        } catch {
            // Whatever was written before the failure is applied; ack that much, then give up.
            scheduleAck()
            return fail("cannot write LSNs \(entries[0].lsn)...\(last.lsn) to this slave's log: \(error)")
        }
        scheduleAck()
        if last.lsn >= syncTarget { replicator.caughtUp() }
    }

    /// Replaces this slave's log and store with the snapshot (blocking work, on the pool), then
    /// applies the batches that arrived meanwhile.
    private func loadSnapshot() {
        guard let (snapshotLSN, records, replicationID) = resync else { return }
        let kv = self.kv
        NIOThreadPool.singleton.submit { [self] _ in
            let sorted = records.sorted { $0.lsn < $1.lsn }
            let loaded = Result { () throws(WALError) in
                try kv.wal.reset(replicationID: replicationID, snapshot: sorted, through: snapshotLSN)
            }
            if case .success(let locations) = loaded {
                kv.store.removeAll()
                for (record, location) in zip(sorted, locations) {
                    Self.apply(record, at: location, to: kv.store, nowMs: WallClock.nowMs())
                }
            }
            call?.eventLoop.execute { [self] in
                switch loaded {
                case .success:
                    logger.warning(
                        "full resync loaded", metadata: ["keys": "\(sorted.count)", "snapshot_lsn": "\(snapshotLSN)"])
                    resync = nil
                    nextLSN = snapshotLSN + 1
                    let held = heldBatches
                    heldBatches = []
                    for entries in held { apply(entries) }
                    ack()
                    if kv.wal.lastLSN >= syncTarget { replicator.caughtUp() }
                case .failure(let error):
                    fail("cannot load the master's snapshot into this slave's log: \(error)")
                }
            }
        }
    }

    /// Applies one replicated entry as replay does: an already expired set acts as a delete.
    private static func apply(_ entry: WALRecord, at location: WALLocation, to store: KeyValueStore, nowMs: Int64) {
        let key = StoreKey(entry.key)
        if entry.op == .delete || (entry.expiresAtMs != 0 && entry.expiresAtMs <= nowMs) {
            store.delete(key, lsn: entry.lsn, nowMs: nowMs)
        } else {
            store.set(
                key, value: entry.value, lsn: entry.lsn, expiresAtMs: entry.expiresAtMs,
                location: DiskLocation(location))
        }
    }

    /// How long an applied-only ack may wait for more batches to fold in.
    static let ackDelay = TimeAmount.milliseconds(1)

    /// Acks what is applied at most `ackDelay` from now, folding in every batch applied
    /// meanwhile. Applied acks only inform (lag, ListSlaves); what a master's `min_acks` waits
    /// for is durability, which is acked as soon as the WAL reports it. Event loop only.
    private func scheduleAck() {
        guard !ackScheduled, let call else { return }
        ackScheduled = true
        call.eventLoop.scheduleTask(in: Self.ackDelay) { [self] in
            ackScheduled = false
            ack()
        }
    }

    private func ack() {
        guard let call else { return }
        let wal = kv.wal
        call.send(
            ReplicateRequest.ack(appliedLSN: wal.completedLSN, durableLSN: wal.durableLSN)
                .encode(allocator: ByteBufferAllocator()))
    }

    private func fail(_ reason: String) {
        guard failed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        logger.error("replication stream abandoned", metadata: ["reason": "\(reason)"])
        call?.cancel()
    }
}
