import ErdtreeSync

/// The in-memory store (docs/architecture.md, storage): every key's latest value, LSN and expiry.
///
/// Keys are spread over a fixed, power-of-two number of shards by their hash;
/// each shard is a dictionary behind its own lock (`Locked`). There is no global lock
/// and no actor: `get`, `set` and `delete` lock exactly one shard for one
/// dictionary operation and never suspend, so any thread — typically a NIO
/// event loop or the WAL's apply step — may call them directly.
///
/// ## Last writer wins by LSN
///
/// Every write carries the LSN the master assigned it, and a write is applied
/// only if its LSN is greater than the key's current LSN. Re-applying an entry
/// (WAL replay after a crash, a batch re-sent after a reconnect, a snapshot
/// overlapping the stream that follows it) is therefore a no-op, and the engine
/// converges to the same state however often entries are replayed.
///
/// ## No tombstones (yet)
///
/// `delete` removes the key outright, so the engine forgets the LSN of the
/// delete. An older `set` of that key arriving afterwards would bring the key
/// back. That cannot happen today: one master assigns LSNs in increasing
/// order, and the WAL, replication and recovery all apply entries in LSN order,
/// so an older entry never follows a newer one for the same key; duplicates of
/// entries that are still the key's latest are caught by the LSN check above.
/// If writes ever arrive out of order (multi-master, parallel apply), deletes
/// must leave tombstones.
///
/// ## Expiry
///
/// Expiry is absolute (`expiresAtMs`, Unix milliseconds, 0 = never), so the
/// master and its slaves agree on it without coordination. Callers pass the
/// current time as `nowMs`; the engine never reads a clock. An expired key
/// reads as missing, is removed when a read or delete finds it, and is reclaimed
/// in the background by `sweepExpired(nowMs:maxPerShard:)`.
///
/// ## Bounded memory
///
/// Every key stays indexed; `maxResidentValues` bounds how many **values** stay
/// in memory (`storage.max_entries`, docs/configuration.md). Under `.lru` a write past the
/// bound evicts another value (its entry keeps LSN, expiry and disk location,
/// `get` returns it with `value == nil`, the caller reads the value from the WAL
/// and may hand it back with `restore(_:value:lsn:)`). Under `.noeviction` every value stays in
/// memory and `admit(_:nowMs:)` refuses new keys once the store holds the bound.
///
/// LRU is approximated by CLOCK (second chance), per shard: each shard holds at
/// most `maxResidentValues / shardCount` values (rounded so the shards' bounds
/// sum to exactly `maxResidentValues`; pick fewer shards for small bounds), and
/// a read only sets a reference bit (in the shard table's control byte), so reads
/// never reorder a list or allocate; the hand sweeps the table's slots. A write
/// or restore counts as one use. The approximation: a value used since the hand
/// last passed it always survives the hand's next pass,
/// but among values not read since then the one evicted is whichever the hand
/// reaches first, not the least recently used; and the bound is per shard, so
/// a shard that gets more than its share of hot keys evicts some while others
/// have room. With keys spread evenly by a seeded hash, the store as a whole
/// holds nearly `maxResidentValues` values once full, and never more.
///
/// ## Memory
///
/// A key costs one allocation (`EntryBox`: a 36-byte header with LSN, expiry and
/// disk location, then the key and value bytes; an evicted key's box holds no
/// value) and one 9-byte slot of an open-addressing table kept 40–80% full, so
/// about 16 bytes of table per key. With 15-byte keys and 100-byte values that
/// measured 196 bytes of RSS per key against Redis 7's 208 (`make bench`, memory).
public final class KeyValueStore: Sendable {
    /// How many shards keys are spread over; a power of two.
    public let shardCount: Int

    /// The bound on values in memory (`.lru`) or on keys (`.noeviction`); nil = unbounded.
    public let maxResidentValues: Int?

    public let evictionPolicy: EvictionPolicy

    private let shards: [Shard]

    /// Creates an empty store.
    ///
    /// - Parameters:
    ///   - shardCount: a power of two; more shards mean less lock contention
    ///     between cores and a little more memory. The default suits machines
    ///     up to a few dozen cores.
    ///   - maxResidentValues: how many values may stay in memory, at least 1;
    ///     nil keeps them all.
    ///   - evictionPolicy: what happens at the bound (see the type's comment).
    public init(shardCount: Int = 64, maxResidentValues: Int? = nil, evictionPolicy: EvictionPolicy = .lru) {
        precondition(
            shardCount > 0 && shardCount & (shardCount - 1) == 0,
            "KeyValueStore shardCount must be a power of two, got \(shardCount)"
        )
        precondition(maxResidentValues.map { $0 > 0 } ?? true, "maxResidentValues must be positive")
        self.shardCount = shardCount
        self.maxResidentValues = maxResidentValues
        self.evictionPolicy = evictionPolicy
        // The bound is split exactly: shards get floor(max / shardCount) and the first
        // max % shardCount get one more, so the shards' bounds sum to the store's. (A
        // ceiling per shard would let the store hold up to shardCount - 1 values too many.)
        self.shards = (0..<shardCount).map { index in
            guard evictionPolicy == .lru, let max = maxResidentValues else { return Shard(maxResident: nil) }
            return Shard(maxResident: max / shardCount + (index < max % shardCount ? 1 : 0))
        }
    }

    /// Reads `key` as of `nowMs`.
    ///
    /// Locks one shard and allocates nothing; marks the key recently used.
    ///
    /// - Returns: the key's value (nil if evicted: read the WAL record with the
    ///   returned LSN), LSN and expiry, or nil if the key is missing or expired
    ///   (`expiresAtMs != 0 && expiresAtMs <= nowMs`). An expired key found
    ///   here is removed.
    public func get(_ key: StoreKey, nowMs: Int64) -> StoredValue? {
        shard(for: key).state.withLock { $0.get(key, nowMs: nowMs) }
    }

    /// Writes `value` to `key` at version `lsn`, if `lsn` is newer than the key's.
    ///
    /// Never refuses: the write is already logged. Under `.lru` it may evict
    /// another value of the same shard; under `.noeviction` callers check
    /// `admit(_:nowMs:)` before logging.
    ///
    /// A key whose current entry has expired but not yet been removed still
    /// counts with its LSN. Writing an expiry in the past stores a key that
    /// reads as missing, which keeps replay of old entries idempotent.
    ///
    /// - Parameters:
    ///   - lsn: the LSN the master assigned this write.
    ///   - expiresAtMs: absolute expiry in Unix milliseconds; 0 = never.
    /// - Returns: whether the write was applied (false: the key already has
    ///   this or a newer LSN).
    @discardableResult
    public func set(
        _ key: StoreKey, value: [UInt8], lsn: UInt64, expiresAtMs: Int64, location: DiskLocation = .none
    ) -> Bool {
        value.withUnsafeBytes { bytes in
            shard(for: key).state.withLock {
                $0.set(key, value: bytes, lsn: lsn, expiresAtMs: expiresAtMs, location: location)
            }
        }
    }

    /// Whether `key` is live at `nowMs` and still at version `lsn`: compaction keeps a record
    /// exactly when this holds for it.
    public func isCurrent(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        shard(for: key).state.withLock { $0.isCurrent(key, lsn: lsn, nowMs: nowMs) }
    }

    /// Points `key` at the new location of its record (compaction moved it), if the key is
    /// still at version `lsn`.
    ///
    /// - Returns: whether the entry was updated (false: rewritten or deleted meanwhile).
    @discardableResult
    public func relocate(_ key: StoreKey, lsn: UInt64, to location: DiskLocation) -> Bool {
        shard(for: key).state.withLock { $0.relocate(key, lsn: lsn, to: location) }
    }

    /// Bytes of each segment that hold some key's current record (the rest of a segment is
    /// dead: overwritten, deleted or expired-and-reclaimed). Locks each shard in turn for one
    /// pass over its entries; keys that expired but were not yet swept still count.
    public func liveBytesBySegment() -> [UInt32: Int64] {
        var bytes: [UInt32: Int64] = [:]
        for shard in shards {
            shard.state.withLock { $0.addLiveBytes(to: &bytes) }
        }
        return bytes
    }

    /// Checks, before a write of `key` is logged, that the store can take it.
    ///
    /// Only `.noeviction` with a bound refuses, and only keys the store does not
    /// hold live; overwrites are always admitted. Counting keys locks every shard
    /// in turn, a cost only writes of new keys under `.noeviction` pay. Writes
    /// admitted concurrently may each see room for one more key, so the bound
    /// can be overshot by the number of new-key writes in flight at once. Keys
    /// that have expired but not yet been swept still count until the sweep
    /// (or a read) removes them.
    ///
    /// - Throws: `StorageError.limitExceeded` naming `storage.max_entries`.
    public func admit(_ key: StoreKey, nowMs: Int64) throws(StorageError) {
        guard evictionPolicy == .noeviction, let limit = maxResidentValues else { return }
        if shard(for: key).state.withLock({ $0.contains(key, nowMs: nowMs) }) { return }
        let held = count
        if held >= limit {
            throw .limitExceeded(name: "storage.max_entries", limit: limit, actual: held)
        }
    }

    /// Puts a value read back from the WAL into memory, if `key` is still at
    /// version `lsn` and evicted; may evict another value of the same shard.
    ///
    /// - Returns: whether the value was put back (false: the key was rewritten,
    ///   deleted, or is already resident).
    @discardableResult
    public func restore(_ key: StoreKey, value: [UInt8], lsn: UInt64) -> Bool {
        value.withUnsafeBytes { bytes in shard(for: key).state.withLock { $0.restore(key, value: bytes, lsn: lsn) } }
    }

    /// Deletes `key` at version `lsn`.
    ///
    /// A live key is removed only if `lsn` is newer than its LSN; an expired
    /// key is removed in any case. No tombstone is kept (see the type's comment).
    ///
    /// - Returns: true if a live (unexpired) key was removed; false if the key
    ///   was missing, expired, or has this or a newer LSN.
    @discardableResult
    public func delete(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        shard(for: key).state.withLock { $0.delete(key, lsn: lsn, nowMs: nowMs) }
    }

    /// Forgets every key: a slave's full resync starts from an empty store.
    public func removeAll() {
        for shard in shards { shard.state.withLock { $0.removeAll() } }
    }

    /// How many keys the store holds, summed over shards.
    ///
    /// Includes keys that have expired but have not been read or swept since,
    /// so it is an upper bound on the live keys. Shards are counted one after
    /// another while writes go on, so the sum need not match any one instant.
    public var count: Int {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.count } }
    }

    /// How many values are in memory, summed over shards (expired-but-unswept ones included).
    public var residentCount: Int {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.residentCount } }
    }

    /// Values evicted to stay within the bound since the store was made, summed over shards.
    public var evictions: UInt64 {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.evictions } }
    }

    /// Bytes of keys and resident values held (expired-but-unswept ones included), without the hash
    /// tables' overhead: what status reports as memory in use by data.
    public var payloadBytes: Int {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.payloadBytes } }
    }

    /// The number of keys in each shard (expired-but-unswept ones included),
    /// for metrics on how evenly keys spread.
    public var shardCounts: [Int] {
        shards.map { shard in shard.state.withLock { $0.count } }
    }

    /// Removes keys that expired at or before `nowMs`, earliest first.
    ///
    /// Meant for a periodic background sweep: each shard is locked once and
    /// examines at most `maxPerShard` scheduled expiries, so one call does
    /// bounded work and holds no lock for long. Call again while it returns
    /// non-zero to catch up after a burst of expiries.
    ///
    /// - Returns: how many keys were removed.
    public func sweepExpired(nowMs: Int64, maxPerShard: Int) -> Int {
        guard maxPerShard > 0 else { return 0 }
        return shards.reduce(0) { removed, shard in
            removed + shard.state.withLock { $0.sweepExpired(nowMs: nowMs, maxDeadlines: maxPerShard) }
        }
    }

    /// Calls `body` with every key that is live at `nowMs`, shard by shard.
    ///
    /// Each shard's live entries are copied out under its lock at one instant
    /// (keys copied, values shared) and visited with no lock held, so `body`
    /// may call back into the store and writers wait only for the copy. The result is
    /// consistent per shard, not across shards: a snapshot "as of LSN X" is
    /// this iteration started after X was applied, followed by the entries
    /// after X, which last-writer-wins applies idempotently. An evicted key is
    /// passed with `value == nil`; its value is in the WAL at its LSN.
    public func forEach(
        nowMs: Int64,
        _ body: (StoreKey, StoredValue) throws -> Void
    ) rethrows {
        for shard in shards {
            for (key, stored) in shard.state.withLock({ $0.snapshot(nowMs: nowMs) }) {
                try body(key, stored)
            }
        }
    }

    /// Deadlines queued for active expiry across shards, stale ones included;
    /// lets tests check the queue stays bounded under rewrites.
    var scheduledExpiryCount: Int {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.scheduledExpiryCount } }
    }

    @inline(__always)
    private func shard(for key: StoreKey) -> Shard {
        // The dictionary rehashes the digest with its own seed, so taking the
        // low bits here does not correlate shard choice with bucket choice.
        shards[key.digest & (shardCount - 1)]
    }
}

/// One shard: a lock around its state.
private final class Shard: Sendable {
    let state: Locked<ShardState>

    init(maxResident: Int?) {
        state = Locked(ShardState(maxResident: maxResident))
    }

    /// Shards are made one after another, so each one's lock and state are allocated just
    /// before this object: the padding keeps them off the next shard's cache line, so cores
    /// working on different shards do not invalidate each other's lines.
    private let cacheLinePadding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0)
}
