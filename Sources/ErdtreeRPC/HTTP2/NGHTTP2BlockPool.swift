#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Recycles the small blocks one nghttp2 session allocates for every stream (stream state,
/// outbound frame items, header copies): about eight malloc/free pairs per request, which
/// under callgrind cost more than everything Erdtree itself does for a `Get`.
///
/// Blocks are bucketed by power-of-two size classes from 64 B to 4 KiB; a freed block goes
/// back on its class's free list (up to `maxFreePerClass`), so a steady request stream reuses
/// the same few hundred blocks. Larger requests go straight to malloc. Each block carries a
/// 16-byte header holding its class, since nghttp2's `free` does not pass a size.
///
/// Confined to the session's event loop like the session itself; freed with the session.
final class NGHTTP2BlockPool {
    private static let headerBytes = 16
    private static let minClass = 6
    private static let maxClass = 12
    private static let unpooled = -1
    private static let maxFreePerClass = 512

    /// Head of each class's free list; a free block's first word links to the next.
    private let heads: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let counts: UnsafeMutablePointer<Int>
    private let classCount = maxClass - minClass + 1

    init() {
        heads = .allocate(capacity: classCount)
        heads.initialize(repeating: nil, count: classCount)
        counts = .allocate(capacity: classCount)
        counts.initialize(repeating: 0, count: classCount)
    }

    deinit {
        for index in 0..<classCount {
            var block = heads[index]
            while let current = block {
                block = current.load(as: UnsafeMutableRawPointer?.self)
                free(current)
            }
        }
        heads.deallocate()
        counts.deallocate()
    }

    func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        let needed = size + Self.headerBytes
        guard needed <= 1 << Self.maxClass else {
            return Self.stamp(malloc(needed), sizeClass: Self.unpooled)
        }
        // The smallest power of two that holds `needed`, from the bit length of `needed - 1`.
        let sizeClass = max(Self.minClass, Int.bitWidth - (needed - 1).leadingZeroBitCount)
        let index = sizeClass - Self.minClass
        if let block = heads[index] {
            heads[index] = block.load(as: UnsafeMutableRawPointer?.self)
            counts[index] -= 1
            return Self.stamp(block, sizeClass: sizeClass)
        }
        return Self.stamp(malloc(1 << sizeClass), sizeClass: sizeClass)
    }

    func release(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        let block = pointer - Self.headerBytes
        let sizeClass = block.load(as: Int.self)
        guard sizeClass != Self.unpooled else {
            free(block)
            return
        }
        let index = sizeClass - Self.minClass
        guard counts[index] < Self.maxFreePerClass else {
            free(block)
            return
        }
        block.storeBytes(of: heads[index], as: UnsafeMutableRawPointer?.self)
        heads[index] = block
        counts[index] += 1
    }

    func reallocate(_ pointer: UnsafeMutableRawPointer?, to size: Int) -> UnsafeMutableRawPointer? {
        guard let pointer else { return allocate(size) }
        let sizeClass = (pointer - Self.headerBytes).load(as: Int.self)
        if sizeClass == Self.unpooled {
            let block = realloc(pointer - Self.headerBytes, size + Self.headerBytes)
            return Self.stamp(block, sizeClass: Self.unpooled)
        }
        let capacity = (1 << sizeClass) - Self.headerBytes
        if size <= capacity { return pointer }
        guard let moved = allocate(size) else { return nil }
        moved.copyMemory(from: pointer, byteCount: capacity)
        release(pointer)
        return moved
    }

    private static func stamp(_ block: UnsafeMutableRawPointer?, sizeClass: Int) -> UnsafeMutableRawPointer? {
        guard let block else { return nil }
        block.storeBytes(of: sizeClass, as: Int.self)
        return block + headerBytes
    }
}
