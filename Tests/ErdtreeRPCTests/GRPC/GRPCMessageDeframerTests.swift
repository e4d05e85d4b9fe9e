import NIOCore
import Testing

@testable import ErdtreeRPC

/// Length-prefixed messages as they arrive from DATA frames: whole, torn anywhere, packed
/// together, empty, oversize, compressed, and cut off by the end of the stream.
@Suite struct GRPCMessageDeframerTests {
    @Test func wholeMessageInOneChunkComesOutOnce() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(framed([1, 2, 3]))
        let message = try #require(try deframer.next())
        #expect(message.allBytes == [1, 2, 3])
        #expect(try deframer.next() == nil)
        #expect(!deframer.hasPartialMessage)
    }

    @Test func messageSplitAtEveryOffsetIsReassembled() throws {
        let payload = (0..<40).map { UInt8($0 * 7 & 0xFF) }
        let wire = framed(payload)
        for split in 0...wire.count {
            var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
            deframer.append(Array(wire[..<split]))
            if split < wire.count {
                #expect(try deframer.next() == nil, "complete after only \(split) of \(wire.count) bytes")
                #expect(deframer.hasPartialMessage == (split > 0))
            }
            deframer.append(Array(wire[split...]))
            let message = try #require(try deframer.next(), "nothing after a split at \(split)")
            #expect(message.allBytes == payload, "split at \(split)")
            #expect(try deframer.next() == nil)
            #expect(!deframer.hasPartialMessage)
        }
    }

    @Test func messageFedOneByteAtATimeIsReassembled() throws {
        let payload = Array("one byte per DATA frame".utf8)
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        var received: [[UInt8]] = []
        for byte in framed(payload) + framed(payload) {
            deframer.append([byte])
            while let message = try deframer.next() { received.append(message.allBytes) }
        }
        #expect(received == [payload, payload])
    }

    @Test func severalMessagesInOneChunkComeOutInOrder() throws {
        let payloads: [[UInt8]] = [[1], [2, 2], [], [3, 3, 3], Array(repeating: 9, count: 300)]
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(payloads.flatMap(framed))
        var received: [[UInt8]] = []
        while let message = try deframer.next() { received.append(message.allBytes) }
        #expect(received == payloads)
        #expect(!deframer.hasPartialMessage)
    }

    @Test func chunkEndingInsideTheNextMessageKeepsTheRest() throws {
        let wire = framed([1, 1]) + framed([2, 2, 2])
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(Array(wire[..<(wire.count - 1)]))
        #expect(try #require(try deframer.next()).allBytes == [1, 1])
        #expect(try deframer.next() == nil)
        #expect(deframer.hasPartialMessage)
        deframer.append([wire[wire.count - 1]])
        #expect(try #require(try deframer.next()).allBytes == [2, 2, 2])
    }

    @Test func zeroLengthMessageIsAMessage() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(framed([]))
        let message = try #require(try deframer.next())
        #expect(message.readableBytes == 0)
        #expect(!deframer.hasPartialMessage)
    }

    @Test func messageExactlyAtTheLimitIsAccepted() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 16)
        deframer.append(framed(Array(repeating: 7, count: 16)))
        #expect(try deframer.next()?.readableBytes == 16)
    }

    @Test func oversizePrefixIsRefusedBeforeTheBodyArrives() {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 100)
        // Only the 5-byte prefix: the refusal must not wait for 101 bytes of body.
        deframer.append([0, 0, 0, 0, 101])
        do {
            _ = try deframer.next()
            Issue.record("a 101-byte message passed a 100-byte limit")
        } catch {
            #expect(error.code == .resourceExhausted)
            #expect(error.message.contains("100"), "message does not name the limit: \(error.message)")
            #expect(error.message.contains("101"), "message does not name the size: \(error.message)")
        }
    }

    @Test func hugePrefixIsRefusedNotAllocated() {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 4 << 20)
        deframer.append([0, 0xFF, 0xFF, 0xFF, 0xFF])
        do {
            _ = try deframer.next()
            Issue.record("a 4 GiB prefix passed a 4 MiB limit")
        } catch {
            #expect(error.code == .resourceExhausted)
            #expect(error.message.contains("\(4 << 20)"))
        }
    }

    @Test func compressedFlagIsInternalError() {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append([1, 0, 0, 0, 2, 0xAB, 0xCD])
        do {
            _ = try deframer.next()
            Issue.record("a compressed message was accepted without grpc-encoding")
        } catch {
            #expect(error.code == .internal)
            #expect(error.message.contains("compressed"))
        }
    }

    @Test func partialPrefixIsDescribed() {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append([0, 0, 0])
        #expect(deframer.hasPartialMessage)
        #expect(deframer.partialMessageDescription == "3 of the 5-byte message prefix")
    }

    @Test func partialBodyIsDescribed() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(Array(framed(Array(repeating: 1, count: 10)).prefix(7)))
        #expect(try deframer.next() == nil)
        #expect(deframer.hasPartialMessage)
        #expect(deframer.partialMessageDescription == "2 of 10 message bytes")
    }

    @Test func partialMessageAfterAWholeOneIsDescribedFromItsOwnPrefix() throws {
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(framed([5, 5]) + [0, 0, 0, 0, 4, 9])
        #expect(try #require(try deframer.next()).allBytes == [5, 5])
        #expect(try deframer.next() == nil)
        #expect(deframer.partialMessageDescription == "1 of 4 message bytes")
    }

    @Test func bufferStaysSmallWhenChunksNeverEndOnAMessageBoundary() throws {
        // 3 bytes first, then 105-byte chunks of 105-byte messages: a partial message is
        // always buffered, so the buffer is never empty and never simply rewound.
        let message = framed(Array(repeating: 1, count: 100))
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1024)
        deframer.append(Array(message[..<3]))
        let shifted = Array(message[3...]) + Array(message[..<3])
        var received = 0
        for _ in 0..<20_000 {
            deframer.append(shifted)
            while let next = try deframer.next() {
                #expect(next.readableBytes == 100)
                received += 1
            }
        }
        #expect(received == 20_000)
        #expect(deframer.buffer.readableBytes == 3)
        #expect(
            deframer.buffer.capacity <= 4096,
            "the buffer holds \(deframer.buffer.capacity) bytes for a 3-byte partial message after 2 MB went through")
    }

    // MARK: Framer

    @Test func framerWritesFlagAndBigEndianLength() {
        var out = ByteBuffer()
        GRPCMessageFramer.write(ByteBuffer(bytes: Array(repeating: 0x42, count: 258)), into: &out)
        #expect(Array(out.allBytes.prefix(5)) == [0, 0, 0, 1, 2])
        #expect(out.readableBytes == 5 + 258)
    }

    @Test func framerOutputDeframesToTheSameMessages() throws {
        let payloads: [[UInt8]] = [[], [0], Array("hello".utf8), (0..<70_000).map { UInt8($0 & 0xFF) }]
        var wire = ByteBuffer()
        for payload in payloads { GRPCMessageFramer.write(ByteBuffer(bytes: payload), into: &wire) }
        var deframer = GRPCMessageDeframer(maxMessageBytes: 1 << 20)
        // Feed it in odd-sized chunks, as DATA frames would arrive.
        let all = wire.allBytes
        var offset = 0
        var received: [[UInt8]] = []
        while offset < all.count {
            let end = min(offset + 997, all.count)
            deframer.append(Array(all[offset..<end]))
            offset = end
            while let message = try deframer.next() { received.append(message.allBytes) }
        }
        #expect(received == payloads)
    }

    @Test func framerLeavesTheSourceBufferUntouched() {
        let message = ByteBuffer(bytes: [1, 2, 3])
        var out = ByteBuffer(bytes: [0xEE])
        GRPCMessageFramer.write(message, into: &out)
        #expect(message.readableBytes == 3)
        #expect(out.allBytes == [0xEE, 0, 0, 0, 0, 3, 1, 2, 3])
    }
}

// MARK: Helpers

extension GRPCMessageDeframer {
    fileprivate mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }
}
