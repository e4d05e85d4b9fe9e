/// The calls open on one HTTP/2 connection, by stream id: looked up several times per call
/// (headers, data, each body pull, close), which with a `Dictionary` cost a hash each.
///
/// Client stream ids are odd and increase, so `id / 2` modulo the slot count puts each of
/// up to `slotCount` consecutive streams in a slot of its own: a lookup is an index and one
/// compare. Streams that find their slot taken (more than `slotCount` open at once, or one
/// that stayed open across that many newer ones: a long `Watch` or `Replicate`) go to a
/// dictionary beside it. 256 slots (2 KiB per connection) cover what clients keep in flight
/// (h2load's 32, grpc-go's 100 by default).
struct StreamTable {
    private var slots: [ServerCall?]
    private var overflow: [Int32: ServerCall] = [:]
    private let mask: Int
    private(set) var count = 0

    static let slotCount = 256

    init() {
        slots = Array(repeating: nil, count: Self.slotCount)
        mask = Self.slotCount - 1
    }

    var isEmpty: Bool { count == 0 }

    subscript(streamID: Int32) -> ServerCall? {
        if let call = slots[slot(streamID)], call.streamID == streamID { return call }
        return overflow.isEmpty ? nil : overflow[streamID]
    }

    mutating func insert(_ call: ServerCall) {
        let index = slot(call.streamID)
        if slots[index] == nil {
            slots[index] = call
        } else {
            overflow[call.streamID] = call
        }
        count += 1
    }

    mutating func remove(_ streamID: Int32) -> ServerCall? {
        let index = slot(streamID)
        let removed: ServerCall?
        if let call = slots[index], call.streamID == streamID {
            slots[index] = nil
            removed = call
        } else {
            removed = overflow.isEmpty ? nil : overflow.removeValue(forKey: streamID)
        }
        if removed != nil { count -= 1 }
        return removed
    }

    /// Every open call, and the table emptied.
    mutating func removeAll() -> [ServerCall] {
        var all = slots.compactMap { $0 } + overflow.values
        all.sort { $0.streamID < $1.streamID }
        slots = Array(repeating: nil, count: slots.count)
        overflow = [:]
        count = 0
        return all
    }

    private func slot(_ streamID: Int32) -> Int {
        Int(streamID >> 1) & mask
    }
}
