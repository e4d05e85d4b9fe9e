import ErdtreeRPC
import ErdtreeStorage
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
    private let shared = Mutex<Info?>(nil)

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
        case .hello(let replicationID, let lastLSN, let slaveID, let address, let heartbeatMs):
            guard !streaming else {
                end(RPCStatus(.invalidArgument, "Hello may be sent only once, first"), because: "a second Hello")
                return
            }
            do throws(RPCStatus) {
                if heartbeatMs != 0 {
                    heartbeatInterval = .milliseconds(Int64(min(max(heartbeatMs, 10), 60_000)))
                }
                try accept(replicationID: replicationID, lastLSN: lastLSN, slaveID: slaveID, address: address)
            } catch {
                end(error, because: "its Hello was refused")
            }
        case .ack(let applied, let durable):
            guard streaming else {
                end(RPCStatus(.invalidArgument, "the first message must be a Hello"), because: "an Ack before Hello")
                return
            }
            shared.withLock {
                $0?.appliedLSN = applied
                $0?.durableLSN = durable
            }
            hub.checkWaiters()
        }
    }

    private func accept(replicationID: String, lastLSN: UInt64, slaveID: String, address: String) throws(RPCStatus) {
        let wal = hub.wal
        guard !slaveID.isEmpty else { throw RPCStatus(.invalidArgument, "Hello.slave_id must not be empty") }
        guard replicationID.isEmpty || Self.isReplicationID(replicationID) else {
            throw RPCStatus(
                .invalidArgument, "Hello.replication_id \"\(replicationID.prefix(64))\" is not 32 hexadecimal digits")
        }
        let masterLSN = wal.lastLSN
        // An empty slave may take this history from its start if the log still has it all.
        let sameHistory = replicationID == wal.replicationID || (replicationID.isEmpty && lastLSN == 0)
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
        guard sameHistory, lastLSN <= masterLSN, lastLSN + 1 >= wal.oldestStreamableLSN else {
            let why =
                !sameHistory
                ? "its replication id \(replicationID) is not this master's \(wal.replicationID)"
                : lastLSN > masterLSN
                    ? "its last LSN \(lastLSN) is ahead of this master's \(masterLSN)"
                    : "the entries after its last LSN \(lastLSN) were compacted away (oldest streamable: "
                        + "\(wal.oldestStreamableLSN))"
            sendSnapshot(because: why)
            return
        }
        logger = hub.logger
        logger[metadataKey: "slave"] = "\(slaveID)"
        logger.info(
            "slave connected; streaming from its last LSN",
            metadata: ["address": "\(address)", "from_lsn": "\(lastLSN + 1)", "master_lsn": "\(masterLSN)"])
        streaming = true
        sentLSN = lastLSN
        send(
            .welcome(replicationID: wal.replicationID, fullResync: false, snapshotLSN: 0, masterLSN: masterLSN))
        pump()
    }

    /// Full resync: a Welcome saying so, every live key as of LSN X in snapshot chunks, then
    /// batches from X + 1. X is the last LSN the store has applied, so the snapshot holds every
    /// write up to X; keys written after X are left out (their records follow in batches), which
    /// keeps every snapshot record at or below X.
    private func sendSnapshot(because reason: String) {
        let wal = hub.wal
        let snapshotLSN = wal.completedLSN
        logger.warning(
            "slave needs a full resync; sending a snapshot",
            metadata: ["reason": "\(reason)", "snapshot_lsn": "\(snapshotLSN)"])
        streaming = true
        snapshotting = true
        send(
            .welcome(
                replicationID: wal.replicationID, fullResync: true, snapshotLSN: snapshotLSN, masterLSN: wal.lastLSN))
        let store = hub.store
        let limit = hub.settings.sendBufferBytes
        NIOThreadPool.singleton.submit { [self] _ in
            var chunk: [WALRecord] = []
            var bytes = 0
            var failure: RPCStatus?
            var keys = 0
            store.forEach(nowMs: WallClock.nowMs()) { key, stored in
                guard failure == nil, stored.lsn <= snapshotLSN else { return }
                let value: [UInt8]
                if let resident = stored.value {
                    value = resident.bytes
                } else {
                    switch Result(catching: { () throws(WALError) in try wal.read(at: WALLocation(stored.location)) }) {
                    case .success(let record) where record.lsn == stored.lsn:
                        value = record.value
                    case .success, .failure(.segmentGone):
                        // Rewritten or compacted meanwhile: its newer record is above X and
                        // reaches the slave in a batch; an older one is still the key's, so read it.
                        guard let again = store.get(key, nowMs: WallClock.nowMs()), again.lsn == stored.lsn,
                            let read = try? wal.read(at: WALLocation(again.location))
                        else { return }
                        value = read.value
                    case .failure(let error):
                        failure = RPCStatus(.unavailable, "the master cannot read its log for a snapshot: \(error)")
                        return
                    }
                }
                keys += 1
                chunk.append(
                    WALRecord(
                        lsn: stored.lsn, timestampMs: 0, op: .set, expiresAtMs: stored.expiresAtMs, key: key.bytes,
                        value: value))
                bytes += key.bytes.count + value.count + 32
                if chunk.count >= hub.settings.batchEntries || bytes >= 1 << 20 {
                    if !sendChunk(chunk, snapshotLSN: snapshotLSN, last: false, roomFor: limit) {
                        failure = RPCStatus(.cancelled, "the slave went away during the snapshot")
                    }
                    chunk.removeAll(keepingCapacity: true)
                    bytes = 0
                }
            }
            if let failure {
                call.eventLoop.execute { [self] in end(failure, because: "the snapshot failed: \(failure.message)") }
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
        let wal = hub.wal
        guard sentLSN < wal.lastLSN else { return }
        if call.pendingOutboundBytes >= hub.settings.sendBufferBytes {
            let now = NIODeadline.now()
            let since = stalledSince ?? now
            stalledSince = since
            if now - since >= TimeAmount(hub.settings.stallTimeout) {
                end(
                    RPCStatus(.resourceExhausted, "the slave stopped reading; reconnect to catch up from the log"),
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
            let read = Result { () throws(WALError) in try wal.entries(since: since, limit: limit) }
            call.eventLoop.execute { [self] in
                reading = false
                switch read {
                case .success(let found) where found.resyncRequired:
                    end(
                        RPCStatus(.failedPrecondition, "the entries after LSN \(since) were compacted away; resync"),
                        because: "its position was compacted away while it streamed")
                case .success(let found):
                    guard let last = found.records.last else { return }
                    send(.batch(entries: found.records, masterLSN: max(found.lastLSN, last.lsn)))
                    sentLSN = last.lsn
                    shared.withLock { $0?.sentLSN = last.lsn }
                    pump()
                case .failure(let error):
                    end(RPCStatus(.unavailable, "the master cannot read its log: \(error)"), because: "\(error)")
                }
            }
        }
    }

    private func beat() {
        guard streaming, !call.isFinished else { return }
        if NIODeadline.now() - lastSend >= TimeAmount(heartbeatInterval / 2) {
            send(.heartbeat(masterLSN: hub.wal.lastLSN, timestampMs: WallClock.nowMs()))
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
        hub.remove(self)
    }

    static func isReplicationID(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
