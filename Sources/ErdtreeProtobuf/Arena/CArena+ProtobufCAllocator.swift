package import CProtobufC

extension CArena {
    /// Runs `body` with a protobuf-c allocator that takes its memory from this arena, for a
    /// generated `…__unpack`: what it unpacks lives until the arena's next `reset()` or its end.
    ///
    /// The allocator's `free` does nothing, since the arena releases everything at once: an
    /// unpacked message needs no `protobuf_c_message_free_unpacked` walk.
    @inlinable
    package mutating func withProtobufCAllocator<Result>(
        _ body: (UnsafeMutablePointer<ProtobufCAllocator>) -> Result
    ) -> Result {
        withUnsafeMutablePointer(to: &self) { arena in
            var allocator = CArena.protobufCAllocator(arena)
            return withUnsafeMutablePointer(to: &allocator, body)
        }
    }

    /// The allocator over `arena`. Not inlinable, so its C callbacks exist once, here.
    @usableFromInline
    static func protobufCAllocator(_ arena: UnsafeMutablePointer<CArena>) -> ProtobufCAllocator {
        ProtobufCAllocator(
            alloc: { data, size in
                // nil makes protobuf-c fail the unpack; it cannot happen (data is the arena).
                data?.assumingMemoryBound(to: CArena.self).pointee.allocate(bytes: size)
            },
            free: { _, _ in },
            allocator_data: UnsafeMutableRawPointer(arena))
    }
}
