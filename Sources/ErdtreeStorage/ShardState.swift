/// The contents of one shard, always accessed under that shard's mutex.
///
/// Every change to `entries` goes through the methods here, so that
/// `entriesWithExpiry`, the expiry queue and the CLOCK ring stay in step with
/// the dictionary.
///
/// ## CLOCK
///
/// With a bound, every resident key has a slot in `clockKeys` and a reference
/// bit in `clockReferenced` (parallel arrays; the entry stores its slot). A read
/// sets the bit; a write or restore inserts the key with the bit set. Past the
/// bound the hand sweeps: a set bit is cleared and passed, the first clear one
/// is evicted and its slot refilled with the ring's last key (swap-remove, so
/// removal is O(1); the moved key skips or repeats one sweep, which only blurs
/// the approximation). Each bit cleared was set by one operation, so eviction
/// is O(1) amortized per operation.
struct ShardState: Sendable {
    private(set) var entries: [StoreKey: IndexEntry] = [:]
    private var expiryQueue = ExpiryQueue()
    /// How many entries have an expiry, i.e. how many deadlines in the queue
    /// can still be live; the rest of the queue is stale.
    private var entriesWithExpiry = 0

    /// Stale deadlines tolerated before compaction, on top of one per live
    /// deadline: with the slack, compaction costs O(1) amortized per write.
    private static let staleDeadlineSlack = 64

    /// Resident values this shard may hold; nil keeps every value resident.
    private let maxResident: Int?
    /// Resident keys, in ring order; empty when `maxResident` is nil.
    private var clockKeys: [StoreKey] = []
    /// Reference bits, parallel to `clockKeys`. Kept out of the entries so a
    /// read never writes to the dictionary a snapshot may be iterating.
    private var clockReferenced: [Bool] = []
    private var clockHand = 0

    /// Key and value bytes held (resident values only), without the dictionary's own overhead.
    private(set) var payloadBytes = 0

    /// Entries whose value is in memory.
    private(set) var residentCount = 0

    init(maxResident: Int? = nil) {
        // A bound of 0 (a store bounded below its shard count) evicts every value at once.
        precondition(maxResident.map { $0 >= 0 } ?? true, "a shard's resident bound must not be negative")
        self.maxResident = maxResident
    }

    var count: Int { entries.count }

    var scheduledExpiryCount: Int { expiryQueue.count }

    func contains(_ key: StoreKey, nowMs: Int64) -> Bool {
        guard let entry = entries[key] else { return false }
        return !entry.isExpired(atMs: nowMs)
    }

    /// Reads `key`, removing it if it has expired.
    ///
    /// The plain read does not touch the dictionary mutably, so a reader never
    /// forces a copy of a dictionary that a snapshot is still iterating; it sets
    /// at most one reference bit, in an array no snapshot shares.
    mutating func get(_ key: StoreKey, nowMs: Int64) -> StoredValue? {
        guard let entry = entries[key] else { return nil }
        guard !entry.isExpired(atMs: nowMs) else {
            removeEntry(forKey: key)
            return nil
        }
        let slot = entry.clockSlot
        if slot >= 0 && !clockReferenced[slot] { clockReferenced[slot] = true }
        return entry.stored
    }

    /// Writes `key` unless its current entry has an LSN at or above `lsn`, then
    /// evicts while the shard is over its bound.
    mutating func set(
        _ key: StoreKey, value: [UInt8], lsn: UInt64, expiresAtMs: Int64, location: DiskLocation
    ) -> Bool {
        let new = IndexEntry(value: value, lsn: lsn, expiresAtMs: expiresAtMs, location: location)
        let freeSlot = maxResident == nil ? -1 : clockKeys.count
        // One hash probe on the common path: the slot is read and written in place.
        let outcome = Self.replace(&entries[key], with: new, freeClockSlot: freeSlot)
        guard outcome.applied else { return false }
        let previous = outcome.previous
        if previous?.hasExpiry == true { entriesWithExpiry -= 1 }
        payloadBytes += value.count - (previous.map { $0.value?.count ?? 0 } ?? -key.bytes.count)
        if previous?.value == nil { residentCount += 1 }
        if let previousSlot = previous?.clockSlot, previousSlot >= 0 {
            clockReferenced[previousSlot] = true
        } else if freeSlot >= 0 {
            clockKeys.append(key)
            clockReferenced.append(true)
        }
        if new.hasExpiry {
            entriesWithExpiry += 1
            expiryQueue.insert(Deadline(expiresAtMs: expiresAtMs, key: key, lsn: lsn))
            compactExpiryQueueIfMostlyStale()
        }
        evictWhileOverBound()
        return true
    }

    /// Makes `value` resident again for `key`, if the key is still at `lsn` and evicted.
    ///
    /// - Returns: whether the value was put back.
    mutating func restore(_ key: StoreKey, value: [UInt8], lsn: UInt64) -> Bool {
        guard let entry = entries[key], entry.lsn == lsn, entry.value == nil else { return false }
        let freeSlot = maxResident == nil ? -1 : clockKeys.count
        Self.fill(&entries[key], with: value, clockSlot: freeSlot)
        payloadBytes += value.count
        residentCount += 1
        if freeSlot >= 0 {
            clockKeys.append(key)
            clockReferenced.append(true)
        }
        evictWhileOverBound()
        return true
    }

    /// Whether `key` is live at `nowMs` and still at version `lsn`.
    func isCurrent(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        guard let entry = entries[key] else { return false }
        return entry.lsn == lsn && !entry.isExpired(atMs: nowMs)
    }

    /// Points `key`'s entry at `location` if the key is still at version `lsn`.
    mutating func relocate(_ key: StoreKey, lsn: UInt64, to location: DiskLocation) -> Bool {
        guard entries[key]?.lsn == lsn else { return false }
        entries[key]?.location = location
        return true
    }

    /// Adds each entry's record length to its segment's total in `bytes`.
    func addLiveBytes(to bytes: inout [UInt32: Int64]) {
        for entry in entries.values where entry.location.segment != 0 {
            bytes[entry.location.segment, default: 0] += Int64(entry.location.length)
        }
    }

    /// Removes `key` if it is live and older than `lsn`; an expired entry is
    /// removed regardless, since it already reads as missing.
    ///
    /// - Returns: whether a live key was removed.
    mutating func delete(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        guard let entry = entries[key] else { return false }
        if entry.isExpired(atMs: nowMs) {
            removeEntry(forKey: key)
            return false
        }
        guard lsn > entry.lsn else { return false }
        removeEntry(forKey: key)
        return true
    }

    /// Removes expired entries, earliest deadline first, looking at no more
    /// than `maxDeadlines` deadlines (stale ones included).
    ///
    /// - Returns: how many entries were removed.
    mutating func sweepExpired(nowMs: Int64, maxDeadlines: Int) -> Int {
        var examined = 0
        var removed = 0
        while examined < maxDeadlines, let deadline = expiryQueue.earliest,
            deadline.expiresAtMs <= nowMs
        {
            expiryQueue.removeEarliest()
            examined += 1
            // The LSN tells whether the deadline still belongs to the current
            // entry; a rewritten key keeps its value until its own deadline.
            guard let entry = entries[deadline.key], entry.lsn == deadline.lsn,
                entry.isExpired(atMs: nowMs)
            else { continue }
            removeEntry(forKey: deadline.key)
            removed += 1
        }
        return removed
    }

    private mutating func removeEntry(forKey key: StoreKey) {
        guard let removed = entries.removeValue(forKey: key) else { return }
        payloadBytes -= key.bytes.count + (removed.value?.count ?? 0)
        if removed.value != nil { residentCount -= 1 }
        if removed.clockSlot >= 0 { removeClockSlot(removed.clockSlot) }
        // Its deadline, if any, stays queued and is skipped as stale.
        if removed.hasExpiry { entriesWithExpiry -= 1 }
    }

    /// Advances the CLOCK hand until the shard is back within its bound.
    private mutating func evictWhileOverBound() {
        guard let maxResident else { return }
        while clockKeys.count > maxResident {
            if clockHand >= clockKeys.count { clockHand = 0 }
            if clockReferenced[clockHand] {
                clockReferenced[clockHand] = false
                clockHand += 1
                continue
            }
            let victim = clockKeys[clockHand]
            let freed = Self.evict(&entries[victim])
            payloadBytes -= freed
            residentCount -= 1
            // The ring's last key moves into this slot; the hand looks at it next.
            removeClockSlot(clockHand)
        }
    }

    /// Swap-removes ring slot `slot`, updating the slot of the key moved into it.
    private mutating func removeClockSlot(_ slot: Int) {
        let last = clockKeys.count - 1
        if slot != last {
            let moved = clockKeys[last]
            clockKeys[slot] = moved
            clockReferenced[slot] = clockReferenced[last]
            entries[moved]?.clockSlot = slot
        }
        clockKeys.removeLast()
        clockReferenced.removeLast()
    }

    private mutating func compactExpiryQueueIfMostlyStale() {
        guard expiryQueue.count > 2 * entriesWithExpiry + Self.staleDeadlineSlack else { return }
        let entries = self.entries
        expiryQueue.retain { deadline in
            guard let entry = entries[deadline.key] else { return false }
            return entry.lsn == deadline.lsn && entry.expiresAtMs == deadline.expiresAtMs
        }
    }

    /// Writes `new` into `slot` if it is newer by LSN (last writer wins), keeping
    /// the ring slot of a resident predecessor or taking `freeClockSlot`.
    private static func replace(
        _ slot: inout IndexEntry?, with new: IndexEntry, freeClockSlot: Int
    ) -> (applied: Bool, previous: IndexEntry?) {
        var new = new
        if let current = slot {
            guard new.lsn > current.lsn else { return (false, nil) }
            new.clockSlot = current.clockSlot >= 0 ? current.clockSlot : freeClockSlot
            slot = new
            return (true, current)
        }
        new.clockSlot = freeClockSlot
        slot = new
        return (true, nil)
    }

    private static func fill(_ slot: inout IndexEntry?, with value: [UInt8], clockSlot: Int) {
        slot?.value = value
        slot?.clockSlot = clockSlot
    }

    /// Drops the value in `slot` and returns how many bytes that freed.
    private static func evict(_ slot: inout IndexEntry?) -> Int {
        let freed = slot?.value?.count ?? 0
        slot?.value = nil
        slot?.clockSlot = -1
        return freed
    }
}
