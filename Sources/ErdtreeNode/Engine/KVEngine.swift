import ErdtreeStorage
import ErdtreeWAL
import Logging
import Synchronization

/// A node's database: the write-ahead log, the in-memory store rebuilt from it, and the one way
/// records get from the first into the second.
///
/// Everything that reads or changes data goes through the engine: the KVStore service (reads
/// with the disk fallback, writes), replication on both sides (batches, snapshots), Admin's
/// status, the compactor and the expiry sweeper; none of them holds the log or the store. What
/// makes a logged record a change of the store is `apply`, used alike by recovery, live writes and
/// replication, as LevelDB's `WriteBatchInternal::InsertInto` serves both its recovery and its
/// `DBImpl::Write` (docs/architecture.md).
///
/// The extensions hold the rest by concern: `KVEngine+Writes` (`write`, which hides the WAL's
/// commit modes), `KVEngine+Reads` (`get` with the disk fallback, `waitForApplied`),
/// `KVEngine+Replication` (replicated batches, snapshots, the master's feed) and
/// `KVEngine+Maintenance` (compaction, expiry, statistics). Every member may be called from any
/// thread unless its comment says otherwise; blocking ones say so.
public final class KVEngine: Sendable {
    /// The engine's own: only its extensions (`KVEngine+*.swift`) touch these two.
    let store: KeyValueStore
    let wal: WriteAheadLog
    /// What recovery found when the engine opened.
    public let recovery: WALRecoveryReport
    /// Whether writes are committed by the event loop that received them (an interval sync
    /// policy; see `write`).
    let callersCommit: Bool
    /// Gets answered by reading an evicted value back from disk, for status.
    let diskReadCount = Atomic<UInt64>(0)
    /// Gets with `min_lsn` waiting for this node to apply their LSN.
    let appliedWaiters: AppliedLSNWaiters
    /// The epochs of the log's history, kept by `apply` from the epoch markers.
    let epochs: EpochHistory
    /// Counts writes between admission and completion, and closes to new ones: a node that is
    /// not the master (or is handing the role over) lets none in.
    public let writeGate = WriteGate()
    /// `<wal.directory>/divergent`: where divergent tails are set aside.
    let divergentDirectory: String
    /// Records in the files there, for status.
    let divergentRecords: Atomic<Int>

    /// Opens the log in `wal.directory` and replays it into a new store bounded by `storage`.
    ///
    /// Called once by `ServerNode.init` (and tests), before anything serves: recovery reads
    /// every segment on the calling thread and applies each record through `apply`. Replay goes
    /// through the same `set` as live writes, so it evicts as it goes and memory stays within
    /// `storage.max_entries` during recovery; under noeviction every logged key is applied even
    /// past the bound (they were acknowledged).
    ///
    /// - Throws: `WALError` when the log is corrupt (naming file, offset and LSN) or cannot be
    ///   read or created.
    /// - Parameter walObserver: told of every write and fsync of the log (the node's metrics).
    public init(
        storage: NodeConfig.Storage, wal configuration: NodeConfig.WAL, walObserver: (any WALObserver)? = nil,
        logger: Logger
    ) throws(WALError) {
        let store = Self.store(storage)
        let epochs = EpochHistory()
        (wal, recovery) = try WriteAheadLog.open(
            Self.walConfiguration(configuration, observer: walObserver), logger: logger
        ) {
            Self.apply($0, at: $1, to: store, epochs: epochs, nowMs: WallClock.nowMs())
        }
        self.store = store
        self.epochs = epochs
        divergentDirectory = configuration.directory + "/divergent"
        divergentRecords = Atomic(WriteAheadLog.recordCount(inFilesOf: divergentDirectory))
        callersCommit = wal.callersCommit
        appliedWaiters = AppliedLSNWaiters(appliedLSN: wal.completedLSN)
    }

    /// Writes and syncs what the log still holds, and stops its writer thread. Called once by
    /// `ServerNode.stop` after the server drained; later writes fail with `.notLogged(.closed)`.
    public func close() {
        wal.close()
    }

    // MARK: The one apply

    /// Applies one logged record to the store (or, for an epoch marker, to the history): the
    /// rule recovery, live writes and replication all go through.
    ///
    /// Last writer wins by LSN (the store ignores a record older than the key's), so replays and
    /// resyncs are idempotent. A set whose expiry has passed acts as a delete: it still replaces
    /// what the key held before, so an older value cannot come back, and it takes no memory.
    ///
    /// - Parameters:
    ///   - location: where the record sits in the log (an evicted value is read back from there).
    ///   - nowMs: the time expiry is judged at.
    /// - Returns: whether the store changed; for a delete, whether a live key was removed.
    @discardableResult
    static func apply(
        _ record: WALRecord, at location: WALLocation, to store: KeyValueStore, epochs: EpochHistory, nowMs: Int64
    ) -> Bool {
        if let epoch = record.markedEpoch {
            epochs.record(EpochStart(epoch: epoch, firstLSN: record.lsn))
            return false
        }
        return apply(record, key: StoreKey(record.key), at: location, to: store, nowMs: nowMs)
    }

    /// `apply(_:at:to:epochs:nowMs:)` for a set or a delete whose key is already made (a live
    /// write made it to look the key up before logging).
    @discardableResult
    static func apply(
        _ record: WALRecord, key: StoreKey, at location: WALLocation, to store: KeyValueStore, nowMs: Int64
    ) -> Bool {
        if record.op == .delete || (record.expiresAtMs != 0 && record.expiresAtMs <= nowMs) {
            return store.delete(key, lsn: record.lsn, nowMs: nowMs)
        }
        return store.set(
            key, value: record.value, lsn: record.lsn, expiresAtMs: record.expiresAtMs,
            location: DiskLocation(location))
    }

    // MARK: Positions

    /// The last LSN in the log (written to the kernel; a slave's includes what it replicated).
    public var lastLSN: UInt64 { wal.lastLSN }

    /// The last LSN whose write is visible to reads: applied to the store.
    ///
    /// What the engine announced after each apply, not the log's `completedLSN`: the log counts
    /// a batch completed only after every write in it was answered, and under `always` those
    /// answers go out on the event loops while the writer thread is still in the batch. A client
    /// answered at LSN n then read a Status, or had a Get with `min_lsn` n refused by the
    /// master, behind its own write.
    public var appliedLSN: UInt64 { appliedWaiters.appliedLSN }

    /// The last LSN known to be fsynced (survives power loss).
    public var durableLSN: UInt64 { wal.durableLSN }

    /// The history this node's log belongs to (32 hex digits), as in every segment header.
    public var replicationID: String { wal.replicationID }

    /// The oldest LSN the log can still stream; older positions need a full resync.
    var oldestStreamableLSN: UInt64 { wal.oldestStreamableLSN }

    /// The epoch of the log's history: its newest epoch marker's, or 1.
    public var epoch: UInt64 { epochs.current }

    /// The epochs of the log's history after epoch 1, oldest first.
    public var epochStarts: [EpochStart] { epochs.epochs }

    /// Records set aside in divergent files (`<wal.directory>/divergent/`).
    public var divergentRecordCount: Int { divergentRecords.load(ordering: .relaxed) }

    // MARK: Building

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

    static func walConfiguration(_ wal: NodeConfig.WAL, observer: (any WALObserver)? = nil) -> WALConfiguration {
        let policy: WALSyncPolicy =
            switch wal.syncInterval {
            case .always: .always
            case .interval(let interval): .interval(interval)
            }
        return WALConfiguration(
            directory: wal.directory, syncPolicy: policy, maxFileSizeBytes: wal.maxFileSizeBytes, observer: observer)
    }
}
