import ErdtreeRPC
import ErdtreeSync
import ErdtreeWAL
import Glibc
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One slave's `Replicate` stream on the master.
///
/// All mutable state lives on the call's event loop (hence `@unchecked Sendable`), except
/// `info`, which `ListSlaves` reads from anywhere under its own lock. The stream answers the
/// slave's Hello with a Welcome, then sends batches read from the WAL after the last LSN it
/// sent, one read at a time on the blocking pool, while the connection has room; heartbeats
/// fill idle periods.
final class SlaveStream: @unchecked Sendable {
    struct Info: Sendable, Equatable {
        var slaveID: String
        var address: String
        var appliedLSN: UInt64
        var durableLSN: UInt64
        var sentLSN: UInt64
        var connectedSinceMs: Int64
    }

    private let call: ServerCall
    private let hub: ReplicationHub
    private var logger: Logger
    private let shared = Locked<Info?>(nil)

    /// Set once the Hello was accepted; batches flow from then on.
    private var streaming = false
    private var sentLSN: UInt64 = 0
    private var reading = false
    /// Set while a snapshot is being sent: batches wait until it is done.
    private var snapshotting = false
    private var stalledSince: NIODeadline?
    private var lastSend = NIODeadline.now()
    private var heartbeat: RepeatedTask?
    /// The slave's `master.sync_interval` from its Hello, or the hub's default.
    private lazy var heartbeatInterval: Duration = hub.settings.heartbeatInterval
    /// Signalled when the stream ends (a switchover waits on its target's).
    let ended = StreamEnd()

    init(call: ServerCall, hub: ReplicationHub) {
        self.call = call
        self.hub = hub
        self.logger = hub.logger
    }

    var info: Info? { shared.withLock { $0 } }

    func start() {
        call.onMessage { [self] message in received(message) }
        call.onRequestEnd { [self] in end(.ok, because: "the slave closed the stream") }
        call.onCancel { [self] in end(nil, because: "the slave went away") }
    }

    /// Ends the stream from any thread (Admin.RemoveSlave).
    func drop(_ status: RPCStatus) {
        call.eventLoop.execute { [self] in end(status, because: status.message) }
    }

    /// Sends `Promote` once every batch up to `lastLSN` is sent (a switchover); returns `ended`.
    func promote(lastLSN: UInt64) -> StreamEnd {
        call.eventLoop.execute { [self] in
            guard streaming, !call.isFinished else { return }
            send(.promote(lastLSN: lastLSN))
        }
        return ended
    }

    /// Called from any thread with a committed batch already encoded: sent as is when it is the
    /// next thing this slave needs and the connection has room, else the log is read instead.
    func offer(_ batch: ByteBuffer, from first: UInt64, through last: UInt64) {
        // On the stream's own loop (a master whose event loop commits its writes) the batch is
        // queued at once, so its flush comes before the answers to the writes in it.
        guard call.eventLoop.inEventLoop else {
            call.eventLoop.execute { [self] in offerOnLoop(batch, from: first, through: last) }
            return
        }
        offerOnLoop(batch, from: first, through: last)
    }

    private func offerOnLoop(_ batch: ByteBuffer, from first: UInt64, through last: UInt64) {
        guard streaming, !reading, !snapshotting, !call.isFinished, sentLSN + 1 == first,
            call.pendingOutboundBytes < hub.settings.sendBufferBytes
        else { return pump() }
        lastSend = .now()
        call.send(batch)
        sentLSN = last
        shared.withLock { $0?.sentLSN = last }
    }

    // MARK: From the slave

    private func received(_ message: ByteBuffer) {
        let request: ReplicateRequest
        do throws(RPCStatus) {
            request = try ReplicateRequest(decoding: message)
        } catch {
            end(error, because: "it sent a message that does not decode")
            return
        }
        switch request {
        case .hello(let hello):
            guard !streaming else {
                end(NodeError.helloRepeated.status, because: "a second Hello")
                return
            }
            do throws(RPCStatus) {
                if hello.heartbeatIntervalMs != 0 {
                    heartbeatInterval = .milliseconds(Int64(min(max(hello.heartbeatIntervalMs, 10), 60_000)))
                }
                if let refusal = hub.admission?(hello) { throw refusal.status }
                try accept(hello)
            } catch {
                end(error, because: "its Hello was refused")
            }
        case .ack(let applied, let durable):
            guard streaming else {
                end(NodeError.helloMissing.status, because: "an Ack before Hello")
                return
            }
            shared.withLock {
                $0?.appliedLSN = applied
                $0?.durableLSN = durable
            }
            hub.checkWaiters()
        }
    }

    private func accept(_ hello: Hello) throws(RPCStatus) {
        let (replicationID, lastLSN, slaveID, address) = (
            hello.replicationID, hello.lastLSN, hello.slaveID, hello.advertiseAddress
        )
        let engine = hub.engine
        guard !slaveID.isEmpty else { throw RequestError.emptyField("Hello.slave_id").status }
        guard replicationID.isEmpty || Self.isReplicationID(replicationID) else {
            throw RequestError.badReplicationID(replicationID).status
        }
        let masterLSN = engine.lastLSN
        // An empty slave may take this history from its start if the log still has it all.
        let sameHistory = replicationID == engine.replicationID || (replicationID.isEmpty && lastLSN == 0)
        logger = hub.logger
        logger[metadataKey: "slave"] = "\(slaveID)"
        shared.withLock {
            $0 = Info(
                slaveID: slaveID, address: address, appliedLSN: lastLSN, durableLSN: lastLSN, sentLSN: lastLSN,
                connectedSinceMs: WallClock.nowMs())
        }
        let interval = TimeAmount(heartbeatInterval)
        heartbeat = call.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            beat()
        }
        // Where the slave's history leaves this one: records past it are a divergent tail, which
        // the slave sets aside before streaming from the branch point.
        let branch = EpochHistory.branchPoint(
            mine: engine.epochStarts, myLastLSN: masterLSN, theirs: hello.epochs, theirLastLSN: lastLSN)
        guard sameHistory, branch + 1 >= engine.oldestStreamableLSN else {
            let why =
                !sameHistory
                ? "its replication id \(replicationID) is not this master's \(engine.replicationID)"
                : "the entries after LSN \(branch) it needs were compacted away (oldest streamable: "
                    + "\(engine.oldestStreamableLSN))"
            sendSnapshot(because: why)
            return
        }
        let divergent = branch < lastLSN
        logger = hub.logger
        logger[metadataKey: "slave"] = "\(slaveID)"
        if divergent {
            logger.warning(
                "slave has a divergent tail; it sets it aside and streams from the branch point",
                metadata: ["address": "\(address)", "branch_lsn": "\(branch)", "slave_last_lsn": "\(lastLSN)"])
            shared.withLock {
                $0?.appliedLSN = branch
                $0?.durableLSN = branch
                $0?.sentLSN = branch
            }
        } else {
            logger.info(
                "slave connected; streaming from its last LSN",
                metadata: ["address": "\(address)", "from_lsn": "\(lastLSN + 1)", "master_lsn": "\(masterLSN)"])
        }
        streaming = true
        sentLSN = min(branch, lastLSN)
        send(
            .welcome(
                Welcome(
                    replicationID: engine.replicationID, masterLSN: masterLSN, epoch: engine.epoch,
                    divergent: divergent, branchLSN: divergent ? branch : 0)))
        pump()
    }

    /// Full resync: a Welcome saying so, every live key as of LSN X in snapshot chunks, then
    /// batches from X + 1. X is the last LSN the store has applied, so the snapshot holds every
    /// write up to X; keys written after X are left out (their records follow in batches), which
    /// keeps every snapshot record at or below X.
    private func sendSnapshot(because reason: String) {
        let engine = hub.engine
        let snapshotLSN = engine.appliedLSN
        logger.warning(
            "slave needs a full resync; sending a snapshot",
            metadata: ["reason": "\(reason)", "snapshot_lsn": "\(snapshotLSN)"])
        streaming = true
        snapshotting = true
        send(
            .welcome(
                Welcome(
                    replicationID: engine.replicationID, fullResync: true, snapshotLSN: snapshotLSN,
                    masterLSN: engine.lastLSN, epoch: engine.epoch)))
        let limit = hub.settings.sendBufferBytes
        NIOThreadPool.singleton.submit { [self] _ in
            var chunk: [WALRecord] = []
            var bytes = 0
            var failure: NodeError?
            var keys = 0
            do throws(WALError) {
                try engine.snapshot(through: snapshotLSN) { record in
                    keys += 1
                    chunk.append(record)
                    bytes += record.key.count + record.value.count + 32
                    guard chunk.count >= hub.settings.batchEntries || bytes >= 1 << 20 else { return true }
                    defer {
                        chunk.removeAll(keepingCapacity: true)
                        bytes = 0
                    }
                    guard sendChunk(chunk, snapshotLSN: snapshotLSN, last: false, roomFor: limit) else {
                        failure = .slaveLeftDuringSnapshot
                        return false
                    }
                    return true
                }
            } catch {
                failure = .snapshotUnreadable(error)
            }
            if let failure {
                call.eventLoop.execute { [self] in
                    end(failure.status, because: "the snapshot failed: \(failure.description)")
                }
                return
            }
            _ = sendChunk(chunk, snapshotLSN: snapshotLSN, last: true, roomFor: limit)
            let sent = keys
            call.eventLoop.execute { [self] in
                logger.info(
                    "snapshot sent; streaming from its LSN",
                    metadata: ["keys": "\(sent)", "snapshot_lsn": "\(snapshotLSN)"])
                snapshotting = false
                sentLSN = snapshotLSN
                shared.withLock { $0?.sentLSN = snapshotLSN }
                pump()
            }
        }
    }

    /// Sends one snapshot chunk from the blocking pool, first waiting while the connection's
    /// buffer is full. Returns false once the call is over.
    private func sendChunk(_ entries: [WALRecord], snapshotLSN: UInt64, last: Bool, roomFor limit: Int) -> Bool {
        while true {
            let (finished, pending) =
                (try? call.eventLoop.submit { [call] in (call.isFinished, call.pendingOutboundBytes) }.wait())
                ?? (true, 0)
            if finished { return false }
            if pending < limit { break }
            usleep(5_000)
        }
        call.eventLoop.execute { [self] in send(.snapshot(snapshotLSN: snapshotLSN, entries: entries, last: last)) }
        return true
    }

    // MARK: To the slave

    /// Reads and sends the next batch if there is one and the connection has room.
    private func pump() {
        guard streaming, !reading, !snapshotting, !call.isFinished else { return }
        let engine = hub.engine
        guard sentLSN < engine.lastLSN else { return }
        if call.pendingOutboundBytes >= hub.settings.sendBufferBytes {
            let now = NIODeadline.now()
            let since = stalledSince ?? now
            stalledSince = since
            if now - since >= TimeAmount(hub.settings.stallTimeout) {
                end(
                    NodeError.slaveStalled.status,
                    because: "it kept its send buffer full for \(hub.settings.stallTimeout)")
                return
            }
            call.eventLoop.scheduleTask(in: .milliseconds(5)) { [self] in pump() }
            return
        }
        stalledSince = nil
        reading = true
        let since = sentLSN
        let limit = hub.settings.batchEntries
        NIOThreadPool.singleton.submit { [self] _ in
            let read = Result { () throws(WALError) in try engine.entries(since: since, limit: limit) }
            call.eventLoop.execute { [self] in
                reading = false
                switch read {
                case .success(let found) where found.resyncRequired:
                    end(
                        NodeError.positionCompactedAway(afterLSN: since).status,
                        because: "its position was compacted away while it streamed")
                case .success(let found):
                    guard let last = found.records.last else { return }
                    send(.batch(entries: found.records, masterLSN: max(found.lastLSN, last.lsn)))
                    sentLSN = last.lsn
                    shared.withLock { $0?.sentLSN = last.lsn }
                    pump()
                case .failure(let error):
                    end(NodeError.masterLogUnreadable(error).status, because: "\(error)")
                }
            }
        }
    }

    private func beat() {
        guard streaming, !call.isFinished else { return }
        if NIODeadline.now() - lastSend >= TimeAmount(heartbeatInterval / 2) {
            send(.heartbeat(masterLSN: hub.engine.lastLSN, timestampMs: WallClock.nowMs()))
        }
        pump()
    }

    private func send(_ response: ReplicateResponse) {
        lastSend = .now()
        call.send(response.encode(allocator: call.allocator))
    }

    /// Ends the stream with `status` (nil: it is already gone) and forgets the slave.
    private func end(_ status: RPCStatus?, because reason: String) {
        heartbeat?.cancel()
        heartbeat = nil
        streaming = false
        if let status, !call.isFinished {
            if status.code != .ok {
                logger.warning(
                    "replication stream dropped",
                    metadata: ["reason": "\(reason)", "status": "\(status.code)", "message": "\(status.message)"])
            }
            call.finish(status)
        } else {
            logger.info("replication stream closed", metadata: ["reason": "\(reason)"])
        }
        ended.signal()
        hub.remove(self)
    }

    static func isReplicationID(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// The end of a slave's stream, which a switchover waits for after promoting it.
final class StreamEnd: Sendable {
    private let done = Atomic<Bool>(false)

    func signal() { done.store(true, ordering: .releasing) }

    var hasEnded: Bool { done.load(ordering: .acquiring) }

    /// Returns once the stream ended or `deadline` passed (an admin call's wait: polled).
    func wait(until deadline: ContinuousClock.Instant) async {
        while !hasEnded, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .microseconds(500))
        }
    }
}
