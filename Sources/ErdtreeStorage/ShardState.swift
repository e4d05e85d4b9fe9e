/// The contents of one shard, always accessed under that shard's mutex.
///
/// ## The table
///
/// An open-addressing hash table with linear probing: `boxes[i]` holds one key's `EntryBox` (key,
/// value and index fields in one allocation) and `control[i]` a word about it — 0 for an empty
/// slot, else `occupied`, the CLOCK bits and 29 bits of the key's mixed hash. A probe compares
/// words in one small array and touches a box only when all 29 bits match; growing and removal
/// find a key's home slot from its word alone, never reading the box (a cache miss per key).
/// The table grows by doubling past 4/5 full; removal shifts the probe chain back (no
/// tombstones). Per key that is a 12-byte slot at 40–80% load plus the box, against a
/// `Dictionary` slot of 56 bytes plus separately allocated key and value arrays.
///
/// ## CLOCK
///
/// With a bound, the hand sweeps the table's slots themselves: a resident value with its
/// `referenced` bit set has it cleared and is passed, the first resident one without is evicted
/// (its box is swapped for one without the value). A read sets the bit; a write or restore
/// inserts the value with the bit set, and the eviction it triggers never takes that value.
/// Each bit cleared was set by one operation, so eviction is O(1) amortized per operation,
/// plus the empty and evicted slots the hand skips, one word each.
///
/// Every change goes through the methods here, so that the counts, the expiry queue and the
/// control words stay in step with the boxes. `@unchecked Sendable`: a shard lives in its
/// mutex, and the boxes it hands out are immutable but for what the mutex guards (`EntryBox`).
struct ShardState: @unchecked Sendable {
    private var control: [UInt32]
    private var boxes: [EntryBox?]
    /// log2 of the capacity, for Fibonacci hashing of a digest into a slot.
    private var capacityBits: Int
    private(set) var count = 0
    private var hand = 0

    private static let occupied: UInt32 = 1 << 31
    private static let resident: UInt32 = 1 << 30
    private static let referenced: UInt32 = 1 << 29
    private static let hashBits = 29
    private static let hashMask: UInt32 = (1 << 29) - 1
    private static let initialCapacityBits = 4

    private var expiryQueue = ExpiryQueue()
    /// How many entries have an expiry, i.e. how many deadlines in the queue
    /// can still be live; the rest of the queue is stale.
    private var entriesWithExpiry = 0

    /// Stale deadlines tolerated before compaction, on top of one per live
    /// deadline: with the slack, compaction costs O(1) amortized per write.
    private static let staleDeadlineSlack = 64

    /// Resident values this shard may hold; nil keeps every value resident.
    private let maxResident: Int?

    /// Key and value bytes held (resident values only), without the table's own overhead.
    private(set) var payloadBytes = 0

    /// Entries whose value is in memory.
    private(set) var residentCount = 0

    /// Values evicted since the shard was made (the node's metrics).
    private(set) var evictions: UInt64 = 0

    init(maxResident: Int? = nil) {
        // A bound of 0 (a store bounded below its shard count) evicts every value at once.
        precondition(maxResident.map { $0 >= 0 } ?? true, "a shard's resident bound must not be negative")
        self.maxResident = maxResident
        capacityBits = Self.initialCapacityBits
        control = Array(repeating: 0, count: 1 << capacityBits)
        boxes = Array(repeating: nil, count: 1 << capacityBits)
    }

    var scheduledExpiryCount: Int { expiryQueue.count }

    /// Forgets every key (a slave about to load a full snapshot).
    mutating func removeAll() {
        self = ShardState(maxResident: maxResident)
    }

    // MARK: Reads

    func contains(_ key: StoreKey, nowMs: Int64) -> Bool {
        guard let slot = find(key) else { return false }
        return !box(at: slot).fields.isExpired(atMs: nowMs)
    }

    /// Reads `key`, removing it if it has expired; marks a resident value recently used.
    mutating func get(_ key: StoreKey, nowMs: Int64) -> StoredValue? {
        guard let slot = find(key) else { return nil }
        let box = box(at: slot)
        let fields = box.fields
        guard !fields.isExpired(atMs: nowMs) else {
            remove(at: slot)
            return nil
        }
        if maxResident != nil && control[slot] & Self.referenced == 0 && fields.isResident {
            control[slot] |= Self.referenced
        }
        return StoredValue(box: box, fields: fields)
    }

    /// Whether `key` is live at `nowMs` and still at version `lsn`.
    func isCurrent(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        guard let slot = find(key) else { return false }
        let fields = box(at: slot).fields
        return fields.lsn == lsn && !fields.isExpired(atMs: nowMs)
    }

    /// Adds each entry's record length to its segment's total in `bytes`.
    func addLiveBytes(to bytes: inout [UInt32: Int64]) {
        for case let box? in boxes {
            let location = box.fields.location
            if location.segment != 0 { bytes[location.segment, default: 0] += Int64(location.length) }
        }
    }

    /// Every entry live at `nowMs`, copied out so the caller can visit them without the lock.
    func snapshot(nowMs: Int64) -> [(StoreKey, StoredValue)] {
        var entries: [(StoreKey, StoredValue)] = []
        entries.reserveCapacity(count)
        for case let box? in boxes {
            let fields = box.fields
            guard !fields.isExpired(atMs: nowMs) else { continue }
            entries.append((box.withKey { StoreKey($0) }, StoredValue(box: box, fields: fields)))
        }
        return entries
    }

    // MARK: Writes

    /// Writes `key` unless its current entry has an LSN at or above `lsn`, then
    /// evicts while the shard is over its bound.
    mutating func set(
        _ key: StoreKey, value: UnsafeRawBufferPointer, lsn: UInt64, expiresAtMs: Int64, location: DiskLocation
    ) -> Bool {
        let slot: Int
        var previous: EntryHeader?
        if let found = find(key) {
            let fields = box(at: found).fields
            guard lsn > fields.lsn else { return false }
            slot = found
            previous = fields
        } else {
            slot = insertionSlot(for: key)
        }
        let box = key.withUnsafeBytes {
            EntryBox.make(key: $0, value: value, lsn: lsn, expiresAtMs: expiresAtMs, location: location)
        }
        boxes[slot] = box
        control[slot] = Self.occupied | Self.resident | Self.referenced | Self.hash(key.digest)
        if let previous {
            payloadBytes += value.count - previous.residentValueBytes
            if !previous.isResident { residentCount += 1 }
            if previous.expiresAtMs != 0 { entriesWithExpiry -= 1 }
        } else {
            count += 1
            payloadBytes += key.bytes.count + value.count
            residentCount += 1
        }
        if expiresAtMs != 0 {
            entriesWithExpiry += 1
            expiryQueue.insert(Deadline(expiresAtMs: expiresAtMs, key: key, lsn: lsn))
            compactExpiryQueueIfMostlyStale()
        }
        evictWhileOverBound(sparing: slot)
        return true
    }

    /// Makes `value` resident again for `key`, if the key is still at `lsn` and evicted.
    ///
    /// - Returns: whether the value was put back.
    mutating func restore(_ key: StoreKey, value: UnsafeRawBufferPointer, lsn: UInt64) -> Bool {
        guard let slot = find(key) else { return false }
        let box = box(at: slot)
        let fields = box.fields
        guard fields.lsn == lsn, !fields.isResident else { return false }
        boxes[slot] = box.with(value: value)
        control[slot] |= Self.resident | Self.referenced
        payloadBytes += value.count
        residentCount += 1
        evictWhileOverBound(sparing: slot)
        return true
    }

    /// Points `key`'s entry at `location` if the key is still at version `lsn`.
    mutating func relocate(_ key: StoreKey, lsn: UInt64, to location: DiskLocation) -> Bool {
        guard let slot = find(key) else { return false }
        let box = box(at: slot)
        guard box.fields.lsn == lsn else { return false }
        box.fields.location = location
        return true
    }

    /// Removes `key` if it is live and older than `lsn`; an expired entry is
    /// removed regardless, since it already reads as missing.
    ///
    /// - Returns: whether a live key was removed.
    mutating func delete(_ key: StoreKey, lsn: UInt64, nowMs: Int64) -> Bool {
        guard let slot = find(key) else { return false }
        let fields = box(at: slot).fields
        if fields.isExpired(atMs: nowMs) {
            remove(at: slot)
            return false
        }
        guard lsn > fields.lsn else { return false }
        remove(at: slot)
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
            guard let slot = find(deadline.key) else { continue }
            let fields = box(at: slot).fields
            guard fields.lsn == deadline.lsn, fields.isExpired(atMs: nowMs) else { continue }
            remove(at: slot)
            removed += 1
        }
        return removed
    }

    // MARK: Table

    /// The top 29 bits of the digest after Fibonacci mixing: the bits that pick the home slot
    /// (for any capacity up to 2^29) and tell keys apart in `control`.
    private static func hash(_ digest: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: (UInt64(UInt(bitPattern: digest)) &* 0x9E37_79B9_7F4A_7C15) >> (64 - hashBits))
    }

    private func home(_ hash: UInt32) -> Int {
        Int(hash >> UInt32(Self.hashBits - capacityBits))
    }

    private var mask: Int { (1 << capacityBits) - 1 }

    /// The box of an occupied slot.
    @inline(__always)
    private func box(at slot: Int) -> EntryBox {
        guard let box = boxes[slot] else { preconditionFailure("slot \(slot) is marked occupied but holds no box") }
        return box
    }

    /// The slot holding `key`, if any.
    private func find(_ key: StoreKey) -> Int? {
        let hash = Self.hash(key.digest)
        let wanted = Self.occupied | hash
        var slot = home(hash)
        while true {
            let word = control[slot]
            if word == 0 { return nil }
            if word & (Self.occupied | Self.hashMask) == wanted && box(at: slot).keyEquals(key) { return slot }
            slot = (slot + 1) & mask
        }
    }

    /// The empty slot a new `key` goes to, growing the table first if it is 4/5 full.
    private mutating func insertionSlot(for key: StoreKey) -> Int {
        if (count + 1) * 5 > (1 << capacityBits) * 4 { grow() }
        var slot = home(Self.hash(key.digest))
        while control[slot] != 0 { slot = (slot + 1) & mask }
        return slot
    }

    private mutating func grow() {
        precondition(capacityBits < Self.hashBits, "a shard's table cannot grow past 2^29 slots")
        var oldControl: [UInt32] = []
        var oldBoxes: [EntryBox?] = []
        swap(&oldControl, &control)
        swap(&oldBoxes, &boxes)
        capacityBits += 1
        let mask = self.mask
        let shift = UInt32(Self.hashBits - capacityBits)
        var newControl = [UInt32](repeating: 0, count: 1 << capacityBits)
        var newBoxes = [EntryBox?](repeating: nil, count: 1 << capacityBits)
        // Boxes are moved, not copied (no reference counting per key) and never read: the home
        // slot comes from the control word. No bounds or uniqueness checks in the loop either.
        newControl.withUnsafeMutableBufferPointer { control in
            newBoxes.withUnsafeMutableBufferPointer { boxes in
                oldBoxes.withUnsafeMutableBufferPointer { old in
                    guard let first = old.baseAddress else { return }
                    for index in old.indices {
                        let word = oldControl[index]
                        let box = (first + index).move()
                        (first + index).initialize(to: nil)
                        guard word != 0 else { continue }
                        var slot = Int((word & Self.hashMask) >> shift)
                        while control[slot] != 0 { slot = (slot + 1) & mask }
                        control[slot] = word
                        boxes[slot] = box
                    }
                }
            }
        }
        control = newControl
        boxes = newBoxes
        hand = 0
    }

    /// Empties `slot` and shifts later members of its probe chain back, so every key stays
    /// reachable from its home slot without tombstones.
    private mutating func remove(at slot: Int) {
        let fields = box(at: slot).fields
        payloadBytes -= Int(fields.keyCount) + fields.residentValueBytes
        if fields.isResident { residentCount -= 1 }
        // Its deadline, if any, stays queued and is skipped as stale.
        if fields.expiresAtMs != 0 { entriesWithExpiry -= 1 }
        count -= 1

        var hole = slot
        var next = slot
        while true {
            next = (next + 1) & mask
            guard control[next] != 0 else { break }
            let home = home(control[next] & Self.hashMask)
            // Move `next` into the hole unless its home lies cyclically in (hole, next].
            let homeAfterHole = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeAfterHole {
                control[hole] = control[next]
                boxes[hole] = boxes[next]
                hole = next
            }
        }
        control[hole] = 0
        boxes[hole] = nil
    }

    /// Advances the CLOCK hand until the shard is back within its bound, never evicting the
    /// value just written or restored at `spared` (unless the bound is 0): the hand's order is
    /// the table's, so without this a fresh value could be the first one it reaches.
    private mutating func evictWhileOverBound(sparing spared: Int) {
        guard let maxResident else { return }
        while residentCount > maxResident {
            let word = control[hand]
            if word & Self.resident != 0 && (hand != spared || maxResident == 0) {
                if word & Self.referenced != 0 {
                    control[hand] = word & ~Self.referenced
                } else {
                    let box = box(at: hand)
                    payloadBytes -= box.fields.residentValueBytes
                    residentCount -= 1
                    evictions += 1
                    boxes[hand] = box.withoutValue()
                    control[hand] = word & ~Self.resident
                }
            }
            hand = (hand + 1) & mask
        }
    }

    private mutating func compactExpiryQueueIfMostlyStale() {
        guard expiryQueue.count > 2 * entriesWithExpiry + Self.staleDeadlineSlack else { return }
        let state = self
        expiryQueue.retain { deadline in
            guard let slot = state.find(deadline.key) else { return false }
            let fields = state.box(at: slot).fields
            return fields.lsn == deadline.lsn && fields.expiresAtMs == deadline.expiresAtMs
        }
    }
}

extension StoredValue {
    /// The entry as a read returns it; `fields` must be `box`'s, read under the lock.
    init(box: EntryBox, fields: EntryHeader) {
        self.init(
            value: fields.isResident ? box.value : nil, lsn: fields.lsn, expiresAtMs: fields.expiresAtMs,
            location: fields.location)
    }
}
