internal import CProtobufC

extension CArena {
    /// Runs `unpack` with a protobuf-c allocator that takes its memory from this arena, for a
    /// generated `…__unpack`: what it unpacks lives until the arena's next `reset()` or its end.
    /// Returns what `unpack` returns.
    ///
    /// The allocator's `free` does nothing, since the arena releases everything at once: an
    /// unpacked message needs no `protobuf_c_message_free_unpacked` walk. The allocator (a
    /// `ProtobufCAllocator`) and the message are raw pointers here because inlinable code in
    /// other modules calls this, and Swift lets such code name only public declarations, which
    /// protobuf-c's are not in this package.
    @usableFromInline
    mutating func withProtobufCAllocator(
        _ unpack: (_ allocator: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer?
    ) -> UnsafeMutableRawPointer? {
        withUnsafeMutablePointer(to: &self) { arena in
            var allocator = ProtobufCAllocator(
                alloc: { data, size in
                    // nil makes protobuf-c fail the unpack; it cannot happen (data is the arena).
                    data?.assumingMemoryBound(to: CArena.self).pointee.allocate(bytes: size)
                },
                free: { _, _ in },
                allocator_data: UnsafeMutableRawPointer(arena))
            return withUnsafeMutablePointer(to: &allocator) { unpack(UnsafeMutableRawPointer($0)) }
        }
    }

    /// The size of the allocator `withProtobufCAllocator` hands out, for a debug check that
    /// the codec's callers pass protobuf-c's generated unpack functions.
    @usableFromInline
    static let protobufCAllocatorBytes = MemoryLayout<ProtobufCAllocator>.size
}
