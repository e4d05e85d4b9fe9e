import ErdtreeStorage
import ErdtreeWAL
import NIOCore
import NIOPosix

extension KVEngine {
    /// A key's value as a Get answers it.
    struct Found: Sendable, Equatable {
        var value: ValueBytes
        /// The LSN of the write that produced the value (the key's version).
        var lsn: UInt64
        /// Absolute expiry in Unix milliseconds; 0 means never.
        var expiresAtMs: Int64
    }

    /// What `get` finds without waiting for the disk.
    enum Lookup: Sendable {
        case found(Found)
        /// No such key, or it expired.
        case missing
        /// The value was evicted from memory and its record is not in the page cache: hand this
        /// to `readFromDisk`, which reads it off the event loop.
        case onDisk(EvictedValue)
    }

    /// An evicted key as `get` found it, for `readFromDisk`.
    struct EvictedValue: Sendable {
        let key: StoreKey
        let stored: StoredValue
    }

    /// Looks `key` up for a Get without ever waiting for the disk.
    ///
    /// Called on the call's event loop for every Get: a shard lock and a dictionary lookup, no
    /// allocation, no hop to another thread. A value evicted by `storage.max_entries` whose record
    /// is in the page cache is read right here (RWF_NOWAIT never waits for the disk), put back in
    /// memory and counted in `diskReads`; otherwise the answer is `.onDisk`.
    func get(_ key: StoreKey) -> Lookup {
        guard let stored = store.get(key, nowMs: WallClock.nowMs()) else { return .missing }
        if let value = stored.value {
            return .found(Found(value: value, lsn: stored.lsn, expiresAtMs: stored.expiresAtMs))
        }
        if let record = wal.readIfCached(at: WALLocation(stored.location)),
            Self.isWrite(record, of: key, at: stored.lsn)
        {
            readBack(record, of: key)
            return .found(Found(value: ValueBytes(record.value), lsn: stored.lsn, expiresAtMs: stored.expiresAtMs))
        }
        return .onDisk(EvictedValue(key: key, stored: stored))
    }

    /// Reads an evicted value back on the blocking thread pool and calls `completion` there with
    /// it, or with nil when the key was deleted or expired meanwhile. Called by the KVStore
    /// service for a `get` that answered `.onDisk`.
    func readFromDisk(
        _ evicted: EvictedValue, completion: @escaping @Sendable (Result<Found?, NodeError>) -> Void
    ) {
        NIOThreadPool.singleton.submit { [self] _ in
            completion(
                Result { () throws(NodeError) in
                    try readEvicted(evicted.key, evicted.stored).map { value, current in
                        Found(value: value, lsn: current.lsn, expiresAtMs: current.expiresAtMs)
                    }
                })
        }
    }

    /// Reads an evicted value back with one positioned read at its record's location and puts
    /// it back in memory. Blocking: called on the thread pool by `readFromDisk`, and by tests.
    ///
    /// A compaction that finished since `stored` was looked up has moved the record (its old
    /// segment is gone); the key is then looked up again, which also catches a rewrite or delete
    /// in between.
    ///
    /// - Returns: the value and the entry it belongs to, or nil if the key is gone by now.
    /// - Throws: `.evictedRecordMismatch` when the bytes there are not this key's write at its LSN,
    ///   `.evictedValueUnreadable` when the log cannot be read, `.evictedRecordKeptMoving` when
    ///   three compactions in a row moved the record.
    func readEvicted(_ key: StoreKey, _ stored: StoredValue) throws(NodeError) -> (ValueBytes, StoredValue)? {
        var current = stored
        // Each retry follows one finished compaction; three in a row means something is wrong.
        for _ in 0..<3 {
            let record: WALRecord
            switch Result(catching: { () throws(WALError) in try wal.read(at: WALLocation(current.location)) }) {
            case .success(let read):
                record = read
            case .failure(.segmentGone):
                guard let again = store.get(key, nowMs: WallClock.nowMs()) else { return nil }
                if let value = again.value { return (value, again) }
                current = again
                continue
            case .failure(let error):
                throw .evictedValueUnreadable(key: key, error)
            }
            guard Self.isWrite(record, of: key, at: current.lsn) else {
                throw .evictedRecordMismatch(
                    key: key, lsn: current.lsn, found: record.op, foundKey: StoreKey(record.key), foundLSN: record.lsn)
            }
            readBack(record, of: key)
            return (ValueBytes(record.value), current)
        }
        throw .evictedRecordKeptMoving(key: key)
    }

    /// Gets answered by reading an evicted value back from disk since the engine opened.
    var diskReads: UInt64 { diskReadCount.load(ordering: .relaxed) }

    /// Whether `record` is the set of `key` at `lsn`, i.e. what the index entry promised.
    private static func isWrite(_ record: WALRecord, of key: StoreKey, at lsn: UInt64) -> Bool {
        record.lsn == lsn && record.op == .set && record.key == key.bytes
    }

    /// Counts a value read back from disk and makes it resident again.
    private func readBack(_ record: WALRecord, of key: StoreKey) {
        diskReadCount.add(1, ordering: .relaxed)
        store.restore(key, value: record.value, lsn: record.lsn)
    }

    // MARK: Read your writes

    /// Calls `body` on `eventLoop` once this node has applied `lsn` (a Get's `min_lsn`).
    ///
    /// Called by the KVStore service on a slave, on the call's event loop. It waits on a list the
    /// engine wakes as it applies (a replicated batch, a snapshot, a write), never by polling.
    /// `body` gets `.minLSNDeadlinePassed` when `callDeadline` (the call's own, if any) comes
    /// before `deadline` and passes first: the transport ends the call with DEADLINE_EXCEEDED then
    /// too; it gets `.minLSNAhead`, naming both LSNs, when `deadline` passes first. It runs inline
    /// when the LSN is applied already or a deadline has passed already.
    func waitForApplied(
        _ lsn: UInt64, until deadline: NIODeadline, callDeadline: NIODeadline?, on eventLoop: any EventLoop,
        _ body: @escaping @Sendable (Result<Void, NodeError>) -> Void
    ) {
        appliedWaiters.wait(for: lsn, until: deadline, callDeadline: callDeadline, on: eventLoop, body)
    }
}
