import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeWAL
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One stream's worth of following: checks and applies what the master sends.
///
/// Everything but durable acks runs on the connection's event loop: a batch is written to this
/// slave's WAL there (one `write`, no hand-off to the writer thread, whose only part is the
/// fsync), applied, and acked. Applied acks are coalesced to one per millisecond at most: under
/// a heavy write load each ack costs both nodes a loopback write and a wake-up.
final class Follower: @unchecked Sendable {
    private let replicator: Replicator
    private let engine: KVEngine
    private let logger: Logger
    var call: ClientCall?
    var watchdog: RepeatedTask?
    /// Event loop only.
    private var welcomed = false
    private var nextLSN: UInt64 = 0
    private var syncTarget: UInt64 = 0
    /// During a full resync: the snapshot so far, and batches that arrived before it was loaded.
    private var resync: (lsn: UInt64, records: [WALRecord], replicationID: String)?
    /// Set while a divergent tail is being set aside: batches wait for it.
    private var truncating = false
    private var heldBatches: [[WALRecord]] = []
    private var ackScheduled = false
    /// Where each message is unpacked, kept across messages (a batch unpacks into hundreds of
    /// pieces).
    private var scratch = CArena()
    private let failed = Atomic<Bool>(false)

    /// Made by the `Replicator` for each stream it opens; `call` and `watchdog` are set before
    /// the first message can arrive.
    init(replicator: Replicator, engine: KVEngine, logger: Logger) {
        self.replicator = replicator
        self.engine = engine
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
        case .welcome(let welcome):
            self.welcome(welcome)
        case .batch(let entries, let masterLSN):
            guard welcomed else { return fail("the master sent a batch before its Welcome") }
            replicator.heard(masterLSN: masterLSN)
            if resync != nil || truncating {
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
            guard resync == nil, !truncating else { return }
            ack()
            if engine.lastLSN >= syncTarget && welcomed { replicator.caughtUp() }
        case .promote(let lastLSN):
            guard welcomed, resync == nil, !truncating else {
                return fail("the master asked for a promotion before this slave caught up")
            }
            replicator.promoteRequested(lastLSN: lastLSN)
        }
    }

    private func welcome(_ welcome: Welcome) {
        let (replicationID, snapshotLSN, masterLSN) = (welcome.replicationID, welcome.snapshotLSN, welcome.masterLSN)
        guard !welcomed else { return fail("the master sent a second Welcome") }
        // Never follow back into an older epoch: that master was replaced and does not know it.
        guard welcome.epoch >= engine.epoch else {
            return fail(
                "the master is at epoch \(welcome.epoch), older than this node's epoch \(engine.epoch): "
                    + "it was replaced; not following it")
        }
        if welcome.divergent {
            return setAsideDivergentTail(after: welcome.branchLSN, masterLSN: masterLSN)
        }
        if welcome.fullResync {
            replicator.countFullResync()
            logger.warning(
                """
                FULL RESYNC: the master cannot stream from this slave's position; its data will be replaced by \
                the master's snapshot
                """,
                metadata: [
                    "slave_last_lsn": "\(engine.lastLSN)", "slave_replication_id": "\(engine.replicationID)",
                    "master_replication_id": "\(replicationID)", "snapshot_lsn": "\(snapshotLSN)",
                ])
            welcomed = true
            resync = (snapshotLSN, [], replicationID)
            syncTarget = masterLSN
            replicator.heard(masterLSN: masterLSN)
            engine.onDurable { [weak self] _ in self?.ack() }
            return
        }
        if replicationID != engine.replicationID {
            do throws(WALError) {
                try engine.adoptReplicationID(replicationID)
                logger.info("empty log joined the master's history", metadata: ["replication_id": "\(replicationID)"])
            } catch {
                return fail("cannot take the master's history \(replicationID): \(error)")
            }
        }
        welcomed = true
        // With an interval sync policy durability trails the appends: ack again as it advances,
        // so a master waiting for durable acks (min_acks) hears at once.
        engine.onDurable { [weak self] _ in self?.ack() }
        nextLSN = engine.lastLSN + 1
        syncTarget = masterLSN
        replicator.heard(masterLSN: masterLSN)
        logger.info(
            "streaming from the master", metadata: ["from_lsn": "\(nextLSN)", "master_lsn": "\(masterLSN)"])
        if engine.lastLSN >= masterLSN { replicator.caughtUp() }
    }

    private func apply(_ entries: [WALRecord]) {
        guard let last = entries.last else { return }
        for (index, entry) in entries.enumerated() where entry.lsn != nextLSN + UInt64(index) {
            return fail("the master sent LSN \(entry.lsn) where LSN \(nextLSN + UInt64(index)) was due")
        }
        nextLSN = last.lsn + 1
        do throws(WALError) {
            try engine.append(replicated: entries)
        } catch {
            // Whatever was written before the failure is applied; ack that much, then give up.
            scheduleAck()
            return fail("cannot write LSNs \(entries[0].lsn)...\(last.lsn) to this slave's log: \(error)")
        }
        scheduleAck()
        if last.lsn >= syncTarget { replicator.caughtUp() }
    }

    /// The master's Welcome said this log holds records past `branchLSN` that are not in its
    /// history: they go to a divergent file and the log is cut (blocking work, on the pool), then
    /// the batches that arrived meanwhile are applied.
    private func setAsideDivergentTail(after branchLSN: UInt64, masterLSN: UInt64) {
        welcomed = true
        truncating = true
        syncTarget = masterLSN
        replicator.heard(masterLSN: masterLSN)
        let engine = self.engine
        NIOThreadPool.singleton.submit { [self] _ in
            let cut = Result { () throws(WALError) in try engine.setAsideDivergentTail(after: branchLSN) }
            call?.eventLoop.execute { [self] in
                switch cut {
                case .success(let truncation):
                    logger.warning(
                        "DIVERGENT TAIL: records not in the master's history were moved out of the log",
                        metadata: [
                            "records": "\(truncation.saved)", "file": "\(truncation.savedPath ?? "-")",
                            "branch_lsn": "\(branchLSN)",
                        ])
                    truncating = false
                    engine.onDurable { [weak self] _ in self?.ack() }
                    resume(at: branchLSN + 1)
                case .failure(let error):
                    fail("cannot set aside this slave's divergent tail after LSN \(branchLSN): \(error)")
                }
            }
        }
    }

    /// Streaming goes on at `lsn` after a full resync or a cut: the batches that arrived
    /// meanwhile are applied first, then acked.
    private func resume(at lsn: UInt64) {
        nextLSN = lsn
        let held = heldBatches
        heldBatches = []
        for entries in held { apply(entries) }
        ack()
        if engine.lastLSN >= syncTarget { replicator.caughtUp() }
    }

    /// Replaces this slave's log and store with the snapshot (blocking work, on the pool), then
    /// applies the batches that arrived meanwhile.
    private func loadSnapshot() {
        guard let (snapshotLSN, records, replicationID) = resync else { return }
        let engine = self.engine
        NIOThreadPool.singleton.submit { [self] _ in
            let loaded = Result { () throws(WALError) in
                try engine.reset(replicationID: replicationID, snapshot: records, through: snapshotLSN)
            }
            call?.eventLoop.execute { [self] in
                switch loaded {
                case .success:
                    logger.warning(
                        "full resync loaded", metadata: ["keys": "\(records.count)", "snapshot_lsn": "\(snapshotLSN)"])
                    resync = nil
                    resume(at: snapshotLSN + 1)
                case .failure(let error):
                    fail("cannot load the master's snapshot into this slave's log: \(error)")
                }
            }
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
        call.send(
            ReplicateRequest.ack(appliedLSN: engine.appliedLSN, durableLSN: engine.durableLSN)
                .encode(allocator: ByteBufferAllocator()))
    }

    private func fail(_ reason: String) {
        guard failed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        logger.error("replication stream abandoned", metadata: ["reason": "\(reason)"])
        call?.cancel()
    }
}
