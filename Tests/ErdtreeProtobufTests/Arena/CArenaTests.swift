import CProtobufC
import ErdtreeProto
import Testing

@testable import ErdtreeProtobuf

/// The one arena: a stack block first, heap blocks past it, a kept block across `reset()`,
/// and protobuf-c unpacking into it.
@Suite struct CArenaTests {
    @Test func allocationsComeFromTheStackBlockThenSpillIntoAHeapBlock() {
        CArena.withStackBlock { arena in
            let first = arena.allocate(bytes: 100)
            let second = arena.allocate(bytes: 100)
            #expect(arena.blocks.isEmpty, "two small allocations fit the stack block")
            #expect(second - first == 112, "each allocation is rounded up to 16 bytes")

            let spilled = arena.allocate(bytes: CArena.stackBlockBytes)
            #expect(arena.blocks.count == 1, "what the stack block cannot hold goes to the heap")
            #expect(arena.blocks.first?.start == spilled)
            spilled.initializeMemory(as: UInt8.self, repeating: 0xAB, count: CArena.stackBlockBytes)
        }
    }

    @Test func heapBlocksDoubleAndALargeAllocationGetsItsOwnBlock() {
        var arena = CArena()
        _ = arena.allocate(bytes: 1000)
        _ = arena.allocate(bytes: 1000)
        _ = arena.allocate(bytes: 5000)
        #expect(arena.blocks.map(\.bytes) == [1024, 2048, 5008])
        for pointer in [arena.allocate(bytes: 1), arena.allocate(bytes: 17)] {
            #expect(Int(bitPattern: pointer) % 16 == 0)
        }
    }

    @Test func resetKeepsTheLargestBlockForTheNextMessage() throws {
        var arena = CArena()
        _ = arena.allocate(bytes: 1000)
        _ = arena.allocate(bytes: 30_000)
        _ = arena.allocate(bytes: 1000)
        #expect(arena.blocks.count == 3)
        let largest = try #require(arena.blocks.max { $0.bytes < $1.bytes })

        arena.reset()
        #expect(arena.blocks.count == 1)
        #expect(arena.blocks.first?.start == largest.start)
        #expect(arena.allocate(bytes: 20_000) == largest.start, "the next message starts at the kept block")
        #expect(arena.blocks.count == 1)
    }

    @Test func resetKeepsNoBlockLargerThanTheCap() {
        var arena = CArena()
        _ = arena.allocate(bytes: CArena.maxKeptBytes + 1)
        arena.reset()
        #expect(arena.blocks.isEmpty)
        #expect(arena.remaining == 0)
    }

    @Test func reserveMakesTheNextAllocationsShareOneBlock() {
        var arena = CArena()
        arena.reserve(bytes: 10_000)
        for _ in 0..<9 { _ = arena.allocate(bytes: 1000) }
        #expect(arena.blocks.count == 1)
        arena.reserve(bytes: 100)
        #expect(arena.blocks.count == 1, "already room: nothing allocated")
    }

    @Test func protobufCUnpacksIntoTheArena() throws {
        let packed: [UInt8] = [0x0A, 0x03] + Array("key".utf8) + [0x10, 0x07]
        var arena = CArena()
        arena.reserve(bytes: 4096)
        let unpacked = arena.withProtobufCAllocator { allocator in
            UnsafeMutableRawPointer(
                erdtree__v1__get_request__unpack(
                    allocator.assumingMemoryBound(to: ProtobufCAllocator.self), packed.count, packed))
        }
        let message = try #require(unpacked).assumingMemoryBound(to: Erdtree__V1__GetRequest.self)
        #expect(String(cString: message.pointee.key) == "key")
        #expect(message.pointee.min_lsn == 7)
        let block = try #require(arena.blocks.first)
        let inBlock = UnsafeRawPointer(message) >= block.start && UnsafeRawPointer(message) < block.start + block.bytes
        #expect(inBlock, "the message lives in the arena, which frees it")
        #expect(arena.blocks.count == 1)
    }
}
