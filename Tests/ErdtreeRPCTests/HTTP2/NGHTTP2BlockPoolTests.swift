import Testing

@testable import ErdtreeRPC

@Suite struct NGHTTP2BlockPoolTests {
    @Test func freedBlockOfTheSameClassIsReused() throws {
        let pool = NGHTTP2BlockPool()
        let first = try #require(pool.allocate(100))
        pool.release(first)
        let second = try #require(pool.allocate(90))
        #expect(first == second, "a 90-byte block should reuse the freed 100-byte block (same 128 B class)")
        pool.release(second)
    }

    @Test func blocksHoldWhatIsWrittenAcrossSizes() throws {
        let pool = NGHTTP2BlockPool()
        var blocks: [(UnsafeMutableRawPointer, Int)] = []
        for size in [1, 47, 48, 49, 100, 1000, 4080, 4081, 10_000, 70_000] {
            let block = try #require(pool.allocate(size))
            block.initializeMemory(as: UInt8.self, repeating: UInt8(size % 251), count: size)
            blocks.append((block, size))
        }
        for (block, size) in blocks {
            let bytes = UnsafeRawBufferPointer(start: block, count: size)
            #expect(bytes.allSatisfy { $0 == UInt8(size % 251) }, "block of \(size) bytes was overwritten")
            pool.release(block)
        }
    }

    @Test func reallocateKeepsContentsWhenGrowingAcrossClassesAndToLargeBlocks() throws {
        let pool = NGHTTP2BlockPool()
        var block = try #require(pool.allocate(10))
        for i in 0..<10 { block.storeBytes(of: UInt8(i), toByteOffset: i, as: UInt8.self) }
        for size in [20, 200, 3000, 9000, 100_000] {
            block = try #require(pool.reallocate(block, to: size))
            let prefix = UnsafeRawBufferPointer(start: block, count: 10)
            #expect(Array(prefix) == Array(0..<10), "contents lost growing to \(size)")
        }
        pool.release(block)
    }

    @Test func reallocateOfNilAllocatesAndReleaseOfNilIsANoOp() throws {
        let pool = NGHTTP2BlockPool()
        pool.release(nil)
        let block = try #require(pool.reallocate(nil, to: 64))
        pool.release(block)
    }
}
