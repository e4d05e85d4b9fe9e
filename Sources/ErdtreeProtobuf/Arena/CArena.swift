/// Owns the C memory of one nested message while it is packed; `free()` releases it all.
/// (Here in ErdtreeRPC for the Connect JSON codec; the node's message types use it too.)
///
/// protobuf-c messages with nested messages, repeated fields and strings are graphs of C
/// pointers; building one in an arena and freeing it in one go after `pack` keeps the
/// ownership in one place. Allocation bumps a pointer through blocks that double in size, so a
/// replication batch of hundreds of entries (three pieces each: the `Entry`, its key, its value)
/// costs a handful of `malloc`s rather than three per entry, and an arena kept for a stream of
/// messages (`reset`) costs none once its block has grown to fit them.
package final class CArena {
    package init() {}

    /// Bytes of the stack block `withScratch` starts an arena on: enough for a unary
    /// request or answer, so transcoding one costs no malloc for its parts.
    static let scratchBytes = 2048

    /// An arena whose first block is on the stack, freed when `body` returns; messages larger
    /// than the block spill into heap blocks as usual.
    static func withScratch<Result, Failure: Error>(
        _ body: (CArena) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withUnsafeTemporaryAllocation(byteCount: scratchBytes, alignment: alignment) {
            scratch throws(Failure) in
            let arena = CArena()
            arena.next = scratch.baseAddress
            arena.remaining = scratch.count
            defer { arena.free() }
            return try body(arena)
        }
    }

    private static let firstBlockBytes = 1024
    private static let maxBlockBytes = 1 << 20
    private static let alignment = 16

    private var blocks: [(start: UnsafeMutableRawPointer, bytes: Int)] = []
    private var next: UnsafeMutableRawPointer?
    private var remaining = 0
    private var blockBytes = CArena.firstBlockBytes

    /// `bytes` of raw memory, 16-byte aligned, released with the arena.
    package func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = (max(bytes, 1) + Self.alignment - 1) & ~(Self.alignment - 1)
        if size > remaining {
            // An allocation larger than the next block gets a block of its own size.
            let capacity = max(blockBytes, size)
            let block = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: Self.alignment)
            blocks.append((block, capacity))
            next = block
            remaining = capacity
            blockBytes = min(max(blockBytes, capacity) * 2, Self.maxBlockBytes)
        }
        guard let start = next else { preconditionFailure("an arena block was just allocated") }
        next = start + size
        remaining -= size
        return start
    }

    package func make<T>(_ type: T.Type, initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = allocate(bytes: MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
        initialize(pointer)
        return pointer
    }

    package func array<T>(of type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(bytes: MemoryLayout<T>.stride * max(count, 1)).bindMemory(to: T.self, capacity: max(count, 1))
    }

    package func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8> {
        let pointer = array(of: UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: bytes.count) }
        }
        return pointer
    }

    package func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        cString(Array(string.utf8))
    }

    /// A NUL-terminated copy of `utf8` (which holds no NUL: keys are checked on the way in).
    package func cString(_ utf8: [UInt8]) -> UnsafeMutablePointer<CChar> {
        utf8.withUnsafeBytes { cString($0) }
    }

    package func cString(_ utf8: UnsafeRawBufferPointer) -> UnsafeMutablePointer<CChar> {
        let pointer = array(of: CChar.self, count: utf8.count + 1)
        if let base = utf8.baseAddress {
            UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: utf8.count)
        }
        pointer[utf8.count] = 0
        return pointer
    }

    /// Forgets everything allocated but keeps the largest block for the next message: repeated
    /// large allocations and frees of the same size are what make glibc consolidate its free
    /// lists (measured: `malloc_consolidate` at 2% of a master's samples with slaves attached).
    package func reset() {
        guard let largest = blocks.max(by: { $0.bytes < $1.bytes }) else { return }
        for block in blocks where block.start != largest.start { block.start.deallocate() }
        blocks = [largest]
        next = largest.start
        remaining = largest.bytes
    }

    package func free() {
        for block in blocks { block.start.deallocate() }
        blocks.removeAll()
        next = nil
        remaining = 0
        blockBytes = Self.firstBlockBytes
    }
}
