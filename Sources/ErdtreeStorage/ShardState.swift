/// The contents of one shard, always accessed under that shard's mutex.
///
/// Every change to `entries` goes through the methods here, so that
/// `entriesWithExpiry` and the expiry queue stay in step with the dictionary.
struct ShardState: Sendable {
    private(set) var entries: [StoreKey: IndexEntry] = [:]
    private var expiryQueue = ExpiryQueue()
    /// How many entries have an expiry, i.e. how many deadlines in the queue
    /// can still be live; the rest of the queue is stale.
    private var entriesWithExpiry = 0

    /// Stale deadlines tolerated before compaction, on top of one per live
    /// deadline: with the slack, compaction costs O(1) amortized per write.
    private static let staleDeadlineSlack = 64

    /// Key and value bytes held, without the dictionary's own overhead.
    private(set) var payloadBytes = 0

    var count: Int { entries.count }

    var scheduledExpiryCount: Int { expiryQueue.count }

    /// Reads `key`, removing it if it has expired.
    ///
    /// The plain read does not touch the dictionary mutably, so a reader never
    /// forces a copy of a dictionary that a snapshot is still iterating.
    mutating func get(_ key: StoreKey, nowMs: Int64) -> StoredValue? {
        guard let entry = entries[key] else { return nil }
        guard !entry.isExpired(atMs: nowMs) else {
            removeEntry(forKey: key)
            return nil
        }
        return entry.stored
    }

    /// Writes `key` unless its current entry has an LSN at or above `lsn`.
    mutating func set(_ key: StoreKey, value: [UInt8], lsn: UInt64, expiresAtMs: Int64) -> Bool {
        let new = IndexEntry(value: value, lsn: lsn, expiresAtMs: expiresAtMs)
        // One hash probe on the common path: the slot is read and written in place.
        let outcome = Self.replace(&entries[key], with: new)
        guard outcome.applied else { return false }
        if outcome.previousHadExpiry { entriesWithExpiry -= 1 }
        payloadBytes += value.count - (outcome.previousValueBytes ?? -key.bytes.count)
        if new.hasExpiry {
            entriesWithExpiry += 1
            expiryQueue.insert(Deadline(expiresAtMs: expiresAtMs, key: key, lsn: lsn))
            compactExpiryQueueIfMostlyStale()
        }
        return true
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
        payloadBytes -= key.bytes.count + removed.value.count
        // Its deadline, if any, stays queued and is skipped as stale.
        if removed.hasExpiry { entriesWithExpiry -= 1 }
    }

    private mutating func compactExpiryQueueIfMostlyStale() {
        guard expiryQueue.count > 2 * entriesWithExpiry + Self.staleDeadlineSlack else { return }
        let entries = self.entries
        expiryQueue.retain { deadline in
            guard let entry = entries[deadline.key] else { return false }
            return entry.lsn == deadline.lsn && entry.expiresAtMs == deadline.expiresAtMs
        }
    }

    /// Writes `new` into `slot` if it is newer by LSN (last writer wins).
    private static func replace(
        _ slot: inout IndexEntry?, with new: IndexEntry
    ) -> (applied: Bool, previousHadExpiry: Bool, previousValueBytes: Int?) {
        if let current = slot {
            guard new.lsn > current.lsn else { return (false, false, nil) }
            slot = new
            return (true, current.hasExpiry, current.value.count)
        }
        slot = new
        return (true, false, nil)
    }
}
