/// One key's scheduled expiry, as it was when the key was written.
struct Deadline: Sendable {
    var expiresAtMs: Int64
    var key: StoreKey
    /// Identifies the write that scheduled this deadline: if the key has since
    /// been rewritten or deleted, its entry's LSN differs and the deadline is stale.
    var lsn: UInt64
}

/// A binary min-heap of deadlines, earliest first, one per shard.
///
/// Active expiry (docs/architecture.md, storage) needs the earliest deadlines without scanning
/// every key. Deadlines are never removed when their key is rewritten or
/// deleted — finding them would cost a search — so the heap holds stale
/// deadlines that the sweeper skips; `ShardState` compacts it before the
/// stale ones can outnumber the live ones by much.
struct ExpiryQueue: Sendable {
    private var heap: [Deadline] = []

    var count: Int { heap.count }

    var earliest: Deadline? { heap.first }

    mutating func insert(_ deadline: Deadline) {
        heap.append(deadline)
        siftUp(from: heap.count - 1)
    }

    @discardableResult
    mutating func removeEarliest() -> Deadline? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(from: 0)
        }
        return first
    }

    /// Keeps only the deadlines `isLive` accepts, in O(n).
    mutating func retain(where isLive: (Deadline) -> Bool) {
        heap.removeAll { !isLive($0) }
        // Floyd's heap construction: sift down every parent, last one first.
        var index = heap.count / 2
        while index > 0 {
            index -= 1
            siftDown(from: index)
        }
    }

    private mutating func siftUp(from start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].expiresAtMs < heap[parent].expiresAtMs else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            var smallest = left
            if right < heap.count, heap[right].expiresAtMs < heap[left].expiresAtMs {
                smallest = right
            }
            guard heap[smallest].expiresAtMs < heap[parent].expiresAtMs else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
