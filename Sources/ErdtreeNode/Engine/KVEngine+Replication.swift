import ErdtreeStorage
import ErdtreeWAL

extension KVEngine {
    // MARK: On a slave

    /// Writes a batch of the master's entries to this node's log, each at its own (the master's)
    /// LSN, and applies each as it is written.
    ///
    /// Called by the slave's `Follower` on its stream's event loop: one `write`, no hand-off to the
    /// writer thread, whose only part is the fsync (watch `durableLSN` or `onDurable`). Gets
    /// waiting for these LSNs are woken once the batch is applied.
    ///
    /// - Throws: `.lsnMismatch` when the entries do not continue the log (nothing is written), or
    ///   the write error that stopped the batch, after applying the entries written before it.
    func append(replicated entries: [WALRecord]) throws(WALError) {
        let nowMs = WallClock.nowMs()
        defer { appliedWaiters.advance(to: wal.completedLSN) }
        try wal.append(replicated: entries) { index, location in
            Self.apply(entries[index], at: location, to: store, epochs: epochs, nowMs: nowMs)
        }
    }

    /// Replaces this node's log and store with the master's snapshot: a slave's full resync.
    ///
    /// The snapshot's records (live keys as of `lsn`) become the log's history up to `lsn`, in
    /// the master's history `replicationID`; the store is emptied and rebuilt from them through
    /// `apply`. Blocking: called by the `Follower` on the thread pool, with no batch in flight.
    ///
    /// - Throws: what `WriteAheadLog.reset` throws; the store is left as it was.
    func reset(replicationID: String, snapshot records: [WALRecord], through lsn: UInt64) throws(WALError) {
        let sorted = records.sorted { $0.lsn < $1.lsn }
        let locations = try wal.reset(replicationID: replicationID, snapshot: sorted, through: lsn)
        store.removeAll()
        epochs.removeAll()
        let nowMs = WallClock.nowMs()
        for (record, location) in zip(sorted, locations) {
            Self.apply(record, at: location, to: store, epochs: epochs, nowMs: nowMs)
        }
        appliedWaiters.advance(to: lsn)
    }

    /// Moves the records after `branchLSN`, which the new master's history does not have, to
    /// `<wal.directory>/divergent/<epoch>-<first LSN>.log` and cuts the log after `branchLSN`;
    /// the store and the epoch history are rebuilt from what is left (a replay, as on recovery).
    /// Blocking: called by the `Follower` on the thread pool, with no batch in flight.
    ///
    /// - Throws: `.lsnMismatch` when the log no longer holds `branchLSN + 1` (compacted: a full
    ///   resync is the only way) or ends before it; the write errors of `WriteAheadLog.truncate`.
    func setAsideDivergentTail(after branchLSN: UInt64) throws(WALError) -> WriteAheadLog.Truncation {
        guard branchLSN + 1 >= wal.oldestStreamableLSN, branchLSN <= wal.lastLSN else {
            throw .lsnMismatch(expected: wal.oldestStreamableLSN, got: branchLSN + 1)
        }
        let path = "\(divergentDirectory)/\(epochs.epoch(at: branchLSN + 1))-\(branchLSN + 1).log"
        store.removeAll()
        epochs.removeAll()
        let nowMs = WallClock.nowMs()
        let truncation = try wal.truncate(after: branchLSN, savingTo: path) { record, location in
            Self.apply(record, at: location, to: store, epochs: epochs, nowMs: nowMs)
        }
        divergentRecords.add(truncation.saved, ordering: .relaxed)
        // Down to the branch: the LSNs after it name records of another history now.
        appliedWaiters.advance(to: wal.completedLSN)
        return truncation
    }

    /// Makes this node's empty log part of the master's history before its first entry arrives.
    /// - Throws: `.badSegmentHeader` when `replicationID` is malformed or the log is not empty.
    func adoptReplicationID(_ replicationID: String) throws(WALError) {
        try wal.adoptReplicationID(replicationID)
    }

    /// Calls `observer` on the WAL's writer thread with the durable LSN after every fsync that
    /// advanced it (a slave acks durability with it). Replaces any earlier observer; keep it short.
    func onDurable(_ observer: (@Sendable (UInt64) -> Void)?) {
        wal.onDurable(observer)
    }

    // MARK: On a master

    /// Calls `observer` with the records of every committed batch, in LSN order, on the committing
    /// thread just before the batch's writers are answered (replication pushes them to slaves
    /// ahead of the answers). nil removes it, so no record list is built while no slave listens.
    func onCommit(_ observer: (@Sendable ([WALRecord]) -> Void)?) {
        wal.onCommit(observer)
    }

    /// Logged records with `lsn > since`, in LSN order, at most `limit`, read from the log's
    /// segments; `resyncRequired` when compaction dropped what follows `since`. Blocking file
    /// I/O: call it off the event loop (`GetUpdates`, a slave's stream, lag in ListSlaves).
    func entries(since: UInt64, limit: Int) throws(WALError) -> WALEntries {
        try wal.entries(since: since, limit: limit)
    }

    /// Calls `body` with the history's epoch markers up to `snapshotLSN`, then a set record of
    /// every key live as of `snapshotLSN`, for a slave's full resync, until `body` returns false.
    /// Blocking: call it off the event loop.
    ///
    /// The store is walked shard by shard while writes go on; a key written after `snapshotLSN`
    /// is left out (its record reaches the slave in a batch after the snapshot), which keeps every
    /// snapshot record at or below `snapshotLSN`. An evicted value is read from its record in the
    /// log and not made resident again (a snapshot must not churn the cache).
    ///
    /// - Throws: the `WALError` of a record that could not be read.
    func snapshot(through snapshotLSN: UInt64, _ body: (WALRecord) -> Bool) throws(WALError) {
        // The history's epoch markers first: the slave's log must know its epochs as this one does.
        for start in epochs.epochs where start.firstLSN <= snapshotLSN {
            guard body(.epochMarker(start.epoch, lsn: start.firstLSN, timestampMs: 0)) else { return }
        }
        var failure: WALError?
        var stopped = false
        store.forEach(nowMs: WallClock.nowMs()) { key, stored in
            guard failure == nil, !stopped, stored.lsn <= snapshotLSN else { return }
            let value: [UInt8]
            if let resident = stored.value {
                value = resident.bytes
            } else {
                switch Result(catching: { () throws(WALError) in try wal.read(at: WALLocation(stored.location)) }) {
                case .success(let record) where record.lsn == stored.lsn:
                    value = record.value
                case .success, .failure(.segmentGone):
                    // Rewritten or compacted meanwhile: its newer record is above the snapshot's LSN
                    // and reaches the slave in a batch; an older one is still the key's, so read it.
                    guard let again = store.get(key, nowMs: WallClock.nowMs()), again.lsn == stored.lsn,
                        let read = try? wal.read(at: WALLocation(again.location))
                    else { return }
                    value = read.value
                case .failure(let error):
                    failure = error
                    return
                }
            }
            stopped = !body(
                WALRecord(
                    lsn: stored.lsn, timestampMs: 0, op: .set, expiresAtMs: stored.expiresAtMs, key: key.bytes,
                    value: value))
        }
        if let failure { throw failure }
    }
}
