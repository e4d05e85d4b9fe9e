import ErdtreeStorage
import ErdtreeWAL

extension KVEngine {
    // MARK: Compaction

    /// Every segment of the log, oldest first (the active one last), for the compactor's plan.
    var segments: [WALSegmentInfo] { wal.segments }

    /// Bytes of each segment that hold some key's current record; the rest is dead. A pass over
    /// every key, shard by shard: call it off the event loop.
    func liveBytesBySegment() -> [UInt32: Int64] {
        store.liveBytesBySegment()
    }

    /// Rewrites the oldest `count` segments with only the records that are still some key's
    /// current write, and points those keys at where their records moved. Blocking: called by the
    /// `Compactor` on the thread pool, one at a time.
    ///
    /// - Returns: what the compaction did, or nil when another one is running or there is
    ///   nothing to do.
    /// - Throws: the `WALError` that stopped it (`WriteAheadLog.compact` says what is left).
    func compact(segments count: Int) throws(WALError) -> WALCompactionResult? {
        let store = self.store
        return try wal.compact(
            segments: count,
            isLive: { record in
                // Epoch markers are the history itself: never dropped.
                record.op == .epoch
                    || (record.op == .set
                        && store.isCurrent(StoreKey(record.key), lsn: record.lsn, nowMs: WallClock.nowMs()))
            },
            moved: { record, location in
                guard record.op == .set else { return }
                store.relocate(StoreKey(record.key), lsn: record.lsn, to: DiskLocation(location))
            })
    }

    // MARK: Expiry

    /// Removes keys that expired at or before `nowMs`, at most `maxPerShard` deadlines per shard.
    /// Called by the `ExpirySweeper` on its event loop; bounded work per call.
    /// - Returns: how many keys were removed.
    func sweepExpired(nowMs: Int64, maxPerShard: Int) -> Int {
        store.sweepExpired(nowMs: nowMs, maxPerShard: maxPerShard)
    }

    // MARK: Status

    /// What Admin/Status reports of the engine.
    struct Statistics: Sendable, Equatable {
        var replicationID: String
        var lastLSN: UInt64
        /// Visible to reads; trails `lastLSN` while a slave applies a backlog.
        var appliedLSN: UInt64
        var durableLSN: UInt64
        var oldestStreamableLSN: UInt64
        /// Keys indexed, values in memory, and the bytes of keys and resident values.
        var keys: Int
        var residentValues: Int
        var memoryBytes: Int
        /// Segments on disk and the bytes written to them.
        var segments: Int
        var diskBytes: Int64
        var diskReads: UInt64
    }

    /// The engine's numbers as of now. Counting keys and bytes locks every shard in turn: call it
    /// off the event loop (Admin/Status does, on the thread pool).
    func statistics() -> Statistics {
        let disk = wal.diskUsage
        return Statistics(
            replicationID: wal.replicationID, lastLSN: lastLSN, appliedLSN: appliedLSN, durableLSN: durableLSN,
            oldestStreamableLSN: oldestStreamableLSN, keys: store.count, residentValues: store.residentCount,
            memoryBytes: store.payloadBytes, segments: disk.segments, diskBytes: disk.bytes, diskReads: diskReads)
    }
}
