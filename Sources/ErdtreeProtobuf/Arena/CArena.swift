/// The memory of protobuf-c messages while they are built and packed, or unpacked and read:
/// the one allocator behind every protobuf-c struct Erdtree makes or decodes.
///
/// protobuf-c messages with nested messages, repeated fields and strings are graphs of C
/// pointers; allocating all of a message's pieces from one arena and dropping them in one go
/// keeps the ownership in one place (no `free_unpacked` walk either). Allocation bumps a
/// pointer through blocks that double in size, so a replication batch of hundreds of entries
/// (three pieces each: the `Entry`, its key, its value) costs a handful of `malloc`s rather
/// than three per entry.
///
/// Three ways to hold one, all this type:
/// - `withStackBlock`: the first block on the stack, for one unary message; transcoding or
///   decoding a request costs no malloc unless it outgrows the block.
/// - A local `var arena = CArena()`: heap blocks from the first allocation, released when the
///   arena goes out of scope.
/// - Kept across a stream of messages and `reset()` after each: once its block has grown to
///   fit them it costs no malloc at all (`reserve(bytes:)` sizes it ahead of a decode).
///
/// Noncopyable: it owns its blocks, which its `deinit` frees. Not thread-safe: one owner at a
/// time, on one thread. Pointers it hands out are valid until the next `reset()` or its end.
///
/// `@usableFromInline`: Swift 6.3 serializes the `@inlinable` members of a `package` type for
/// other modules only when the type is `@usableFromInline` (or public); without, the node's
/// decoders called the codec unspecialized, 2.8k more instructions per gRPC Get.
@usableFromInline
package struct CArena: ~Copyable {
    // Constants the inlinable code uses are computed properties, which code inlined into
    // other modules folds; a `static let` there would be a call through its accessor.

    /// Bytes of the stack block `withStackBlock` starts an arena on: enough for a unary
    /// request or answer, and the most `withUnsafeTemporaryAllocation` puts on the stack
    /// without first asking the runtime whether the thread's stack has room (a call that
    /// costs more than the decode it serves).
    @inlinable static var stackBlockBytes: Int { 1024 }
    /// Every allocation is rounded up to this, which is also malloc's alignment.
    @inlinable static var alignment: Int { 16 }
    @inlinable static var firstBlockBytes: Int { 1024 }
    static let maxBlockBytes = 1 << 20
    /// `reset()` keeps its largest block up to this size: a stream that once carried a huge
    /// message does not pin that much memory for the rest of its life.
    static let maxKeptBytes = 8 << 20

    /// The newest heap block this arena owns (a stack block is not among them). Each block
    /// starts with a `BlockHeader` linking it to the one before: a list threaded through the
    /// blocks themselves, so an arena holds no reference-counted storage and making and
    /// dropping one per call costs no ARC traffic.
    @usableFromInline var newestBlock: UnsafeMutableRawPointer?
    @usableFromInline var next: UnsafeMutableRawPointer?
    @usableFromInline var remaining = 0
    @usableFromInline var blockBytes = CArena.firstBlockBytes

    /// What a heap block starts with; its usable bytes follow, aligned.
    struct BlockHeader {
        var previous: UnsafeMutableRawPointer?
        /// Usable bytes, after the header.
        var bytes: Int
    }

    /// Bytes the header takes at the start of a block: `alignment`, so what follows is aligned.
    static var headerBytes: Int { max(MemoryLayout<BlockHeader>.stride, alignment) }

    /// An empty arena: no memory until the first allocation.
    @inlinable
    package init() {}

    /// An arena that starts on `block`, which it does not own and which must outlive it.
    @inlinable
    init(startingOn block: UnsafeMutableRawBufferPointer) {
        next = block.baseAddress
        remaining = block.count
    }

    deinit {
        var block = newestBlock
        while let current = block {
            block = current.load(as: BlockHeader.self).previous
            current.deallocate()
        }
    }

    /// The heap blocks' usable memory, oldest first (a stack block is not listed).
    var blocks: [(start: UnsafeMutableRawPointer, bytes: Int)] {
        var list: [(start: UnsafeMutableRawPointer, bytes: Int)] = []
        var block = newestBlock
        while let current = block {
            let header = current.load(as: BlockHeader.self)
            list.append((current + Self.headerBytes, header.bytes))
            block = header.previous
        }
        return list.reversed()
    }

    /// Runs `body` with an arena whose first block (`stackBlockBytes`) is on the stack, freed
    /// when `body` returns; larger contents spill into heap blocks as usual. Nothing `body`
    /// allocates may outlive it.
    @inlinable
    package static func withStackBlock<Result, Failure: Error>(
        _ body: (inout CArena) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withUnsafeTemporaryAllocation(byteCount: stackBlockBytes, alignment: alignment) {
            block throws(Failure) in
            var arena = CArena(startingOn: block)
            return try body(&arena)
        }
    }

    /// `bytes` of raw memory, 16-byte aligned, valid until the next `reset()` or the arena's end.
    /// Always inlined: protobuf-c's allocator callback calls it for every piece it unpacks.
    @inlinable @inline(__always)
    package mutating func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = (max(bytes, 1) + Self.alignment - 1) & ~(Self.alignment - 1)
        if size > remaining { addBlock(atLeast: size) }
        guard let start = next else { preconditionFailure("an arena block was just made current") }
        next = start + size
        remaining -= size
        return start
    }

    /// Makes sure the next `bytes` come from one block already allocated, so that unpacking a
    /// message of known size into a kept arena allocates once, on its first message.
    @inlinable
    package mutating func reserve(bytes: Int) {
        if bytes > remaining { addBlock(atLeast: bytes) }
    }

    /// A new current block: the next size in the doubling, or `bytes` when larger (a big
    /// allocation gets a block of its own size).
    @usableFromInline
    mutating func addBlock(atLeast bytes: Int) {
        let capacity = max(blockBytes, (bytes + Self.alignment - 1) & ~(Self.alignment - 1))
        let block = UnsafeMutableRawPointer.allocate(byteCount: Self.headerBytes + capacity, alignment: Self.alignment)
        block.storeBytes(of: BlockHeader(previous: newestBlock, bytes: capacity), as: BlockHeader.self)
        newestBlock = block
        next = block + Self.headerBytes
        remaining = capacity
        blockBytes = min(max(blockBytes, capacity) * 2, Self.maxBlockBytes)
    }

    /// A `T`, initialized by `initialize` (a protobuf-c `…__init`).
    @inlinable
    package mutating func make<T>(_ type: T.Type, initialize: (UnsafeMutablePointer<T>) -> Void)
        -> UnsafeMutablePointer<T>
    {
        let pointer = allocate(bytes: MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
        initialize(pointer)
        return pointer
    }

    /// Room for `count` values of `T`, uninitialized.
    @inlinable
    package mutating func array<T>(of type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(bytes: MemoryLayout<T>.stride * max(count, 1)).bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// A copy of `bytes`.
    package mutating func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8> {
        let pointer = array(of: UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: bytes.count) }
        }
        return pointer
    }

    /// A NUL-terminated copy of `string`.
    package mutating func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        var string = string
        return string.withUTF8 { cString(UnsafeRawBufferPointer($0)) }
    }

    /// A NUL-terminated copy of `utf8` (which holds no NUL: keys are checked on the way in).
    package mutating func cString(_ utf8: [UInt8]) -> UnsafeMutablePointer<CChar> {
        utf8.withUnsafeBytes { cString($0) }
    }

    /// A NUL-terminated copy of `utf8`.
    package mutating func cString(_ utf8: UnsafeRawBufferPointer) -> UnsafeMutablePointer<CChar> {
        let pointer = array(of: CChar.self, count: utf8.count + 1)
        if let base = utf8.baseAddress {
            UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: utf8.count)
        }
        pointer[utf8.count] = 0
        return pointer
    }

    /// Forgets everything allocated but keeps the largest block (up to `maxKeptBytes`) for the
    /// next message: repeated large allocations and frees of the same size are what make glibc
    /// consolidate its free lists (measured: `malloc_consolidate` at 2% of a master's samples
    /// with slaves attached). A stack block is forgotten, never kept.
    @usableFromInline
    package mutating func reset() {
        var kept: (block: UnsafeMutableRawPointer, bytes: Int)?
        var block = newestBlock
        while let current = block {
            let header = current.load(as: BlockHeader.self)
            block = header.previous
            if header.bytes <= Self.maxKeptBytes, header.bytes > kept?.bytes ?? 0 {
                kept?.block.deallocate()
                kept = (current, header.bytes)
            } else {
                current.deallocate()
            }
        }
        newestBlock = kept?.block
        next = kept.map { $0.block + Self.headerBytes }
        remaining = kept?.bytes ?? 0
        kept?.block.storeBytes(of: BlockHeader(previous: nil, bytes: remaining), as: BlockHeader.self)
    }
}
