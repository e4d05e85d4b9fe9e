import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeSync
import ErdtreeWAL
import Logging
import NIOCore
import Synchronization

/// The master's side of `erdtree.v1.Replication/Replicate`: one `SlaveStream` per connected
/// slave, each fed from the engine's log (docs/replication.md).
///
/// Entries are never copied into per-slave queues: each stream remembers the last LSN it sent
/// and reads what follows from the log when the log commits (the WAL's commit observer wakes
/// every stream) and its connection has room. A slave that stops reading therefore costs the
/// master one bounded send buffer, never the writes of others; one that stays stuck past
/// `stallTimeout` is dropped and catches up from disk when it reconnects.
public final class ReplicationHub: Sendable {
    public static let serviceName = "erdtree.v1.Replication"

    struct Settings: Sendable {
        /// Heartbeat period while a stream has nothing to send.
        var heartbeatInterval: Duration = .seconds(1)
        /// Bytes queued on a slave's connection above which no more batches are read for it.
        var sendBufferBytes = 4 << 20
        /// How long a slave may keep its buffer full before it is dropped.
        var stallTimeout: Duration = .seconds(10)
        /// Entries per batch read from the log.
        var batchEntries = 1000
    }

    let engine: KVEngine
    let settings: Settings
    let logger: Logger
    private let streams = Locked<[ObjectIdentifier: SlaveStream]>([:])
    /// Slaves pre-registered with `AddSlave` (id → address), listed even while disconnected.
    private let registered = Locked<[String: String]>([:])
    /// Writes waiting for slave acks (`replication.min_acks`), oldest first.
    private let waiters = Locked<[AckWaiter]>([])
    /// Where committed batches are encoded: pushes come one at a time from the WAL's commit
    /// path, so the lock is uncontended; it only makes the reuse safe.
    private let pushArena = Locked(CArena())
    /// Decides whether a slave's Hello may stream (`RoleManager`: only a master admits, and a
    /// Hello of a newer epoch fences it); nil admits. Read once per Hello.
    private let admissionRule = Locked<(@Sendable (Hello) -> NodeError?)?>(nil)

    var admission: (@Sendable (Hello) -> NodeError?)? {
        get { admissionRule.withLock { $0 } }
        set { admissionRule.withLock { $0 = newValue } }
    }

    /// Built by a master's `ServerNode`, which registers it in its router.
    init(engine: KVEngine, settings: Settings = Settings(), logger: Logger) {
        self.engine = engine
        self.settings = settings
        self.logger = logger
    }

    public func register(in router: inout RPCRouter) {
        router.register(
            "/erdtree.v1.Replication/Replicate",
            .bidirectional { [self] call in
                let stream = SlaveStream(call: call, hub: self)
                streams.withLock { streams in
                    // The first stream makes the WAL hand over committed batches (before, the
                    // writer builds no record list for anyone).
                    if streams.isEmpty { engine.onCommit { [weak self] records in self?.push(records) } }
                    streams[ObjectIdentifier(stream)] = stream
                }
                stream.start()
            })
    }

    /// The connected slaves.
    var slaves: [SlaveStream.Info] {
        streams.withLock { Array($0.values) }.compactMap(\.info).sorted { $0.slaveID < $1.slaveID }
    }

    /// Every slave `ListSlaves` shows: the connected ones, and the registered ones not connected.
    func listing(lastLSN: UInt64) -> [SlaveListing] {
        let connected = slaves
        let nowMs = WallClock.nowMs()
        var listed = connected.map { slave in
            SlaveListing(
                slaveID: slave.slaveID, address: slave.address, appliedLSN: slave.appliedLSN,
                durableLSN: slave.durableLSN, lagEntries: lastLSN - min(lastLSN, slave.appliedLSN),
                lagMs: lagMs(appliedLSN: slave.appliedLSN, lastLSN: lastLSN, nowMs: nowMs),
                connectedSinceMs: slave.connectedSinceMs, connected: true)
        }
        let ids = Set(connected.map(\.slaveID))
        for (id, address) in registered.withLock({ $0 }) where !ids.contains(id) {
            listed.append(
                SlaveListing(
                    slaveID: id, address: address, appliedLSN: 0, durableLSN: 0, lagEntries: lastLSN,
                    lagMs: 0, connectedSinceMs: 0, connected: false))
        }
        return listed.sorted { $0.slaveID < $1.slaveID }
    }

    /// The age of the oldest entry a slave has not applied: read from that entry's record in
    /// the log (an admin call's one positioned read). 0 when it is caught up or the record is
    /// no longer in the log.
    private func lagMs(appliedLSN: UInt64, lastLSN: UInt64, nowMs: Int64) -> Int64 {
        guard appliedLSN < lastLSN, let oldest = try? engine.entries(since: appliedLSN, limit: 1).records.first
        else {
            return 0
        }
        return max(0, nowMs - oldest.timestampMs)
    }

    /// Ends every stream (UNAVAILABLE, so slaves redial): a graceful shutdown waits for open
    /// calls, and these never end by themselves.
    func stop() {
        dropAll(NodeError.masterShuttingDown.status)
    }

    /// Ends every stream with `status`: this node stopped being the master (a status carrying
    /// `erdtree-master` sends the slaves to the new one).
    func dropAll(_ status: RPCStatus) {
        for stream in streams.withLock({ Array($0.values) }) {
            stream.drop(status)
        }
    }

    /// Sends a switchover's `Promote` to the slave `slaveID`. Returns what ends when its stream
    /// does (the promoted slave stops following), or nil when it has no stream.
    func promote(slaveID: String, lastLSN: UInt64) -> StreamEnd? {
        let stream = streams.withLock { Array($0.values) }.first { $0.info?.slaveID == slaveID }
        return stream?.promote(lastLSN: lastLSN)
    }

    /// Pre-registers a slave (`Admin.AddSlave`, docs/replication.md): listed as disconnected until
    /// it dials in.
    func add(slaveID: String, address: String) {
        registered.withLock { $0[slaveID] = address }
    }

    /// Forgets a slave and drops its stream. Returns whether one had that id.
    func remove(slaveID: String) -> Bool {
        let wasRegistered = registered.withLock { $0.removeValue(forKey: slaveID) != nil }
        let connected = streams.withLock { Array($0.values) }.filter { $0.info?.slaveID == slaveID }
        for stream in connected { stream.drop(NodeError.slaveRemoved.status) }
        return wasRegistered || !connected.isEmpty
    }

    func remove(_ stream: SlaveStream) {
        streams.withLock { streams in
            guard streams.removeValue(forKey: ObjectIdentifier(stream)) != nil, streams.isEmpty else { return }
            engine.onCommit(nil)
        }
    }

    /// Calls `done` once `count` connected slaves have acked `durable_lsn >= lsn`, or after
    /// `timeout` on `eventLoop` with how many had: semi-synchronous replication. The write itself
    /// stays logged and applied either way (PostgreSQL's synchronous commit works the same).
    func awaitAcks(
        lsn: UInt64, count: Int, timeout: Duration, on eventLoop: any EventLoop,
        _ done: @escaping @Sendable (_ acked: Int, _ enough: Bool) -> Void
    ) {
        let waiter = AckWaiter(lsn: lsn, count: count, done: done)
        waiters.withLock { $0.append(waiter) }
        checkWaiters()
        eventLoop.scheduleTask(in: TimeAmount(timeout)) { [self] in
            waiters.withLock { $0.removeAll { $0 === waiter } }
            waiter.finish(acked: ackedCount(lsn), enough: false)
        }
    }

    /// A slave acked: completes every waiter that now has enough acks.
    func checkWaiters() {
        let pending = waiters.withLock { $0 }
        guard !pending.isEmpty else { return }
        let durable = streams.withLock { Array($0.values) }.compactMap(\.info?.durableLSN)
        var finished: [AckWaiter] = []
        for waiter in pending {
            let acked = durable.filter { $0 >= waiter.lsn }.count
            if acked >= waiter.count {
                waiter.finish(acked: acked, enough: true)
                finished.append(waiter)
            }
        }
        guard !finished.isEmpty else { return }
        waiters.withLock { $0.removeAll { waiter in finished.contains { $0 === waiter } } }
    }

    private func ackedCount(_ lsn: UInt64) -> Int {
        streams.withLock { Array($0.values) }.compactMap(\.info?.durableLSN).filter { $0 >= lsn }.count
    }

    /// A batch was committed: encoded once, offered to every stream. A stream that has sent
    /// everything before it sends it as is; one that is behind (or busy) reads the log instead.
    private func push(_ records: [WALRecord]) {
        let targets = streams.withLock { Array($0.values) }
        guard !targets.isEmpty, let first = records.first?.lsn, let last = records.last?.lsn else { return }
        let encoded = pushArena.withLock { arena in
            ReplicateResponse.batch(entries: records, masterLSN: last)
                .encode(allocator: ByteBufferAllocator(), reusing: &arena)
        }
        for stream in targets { stream.offer(encoded, from: first, through: last) }
    }
}

/// One write waiting for slave acks; finishes exactly once.
final class AckWaiter: Sendable {
    let lsn: UInt64
    let count: Int
    private let done: @Sendable (Int, Bool) -> Void
    private let finished = Atomic<Bool>(false)

    init(lsn: UInt64, count: Int, done: @escaping @Sendable (Int, Bool) -> Void) {
        self.lsn = lsn
        self.count = count
        self.done = done
    }

    func finish(acked: Int, enough: Bool) {
        guard finished.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        done(acked, enough)
    }
}
