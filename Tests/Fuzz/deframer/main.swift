// Feeds a gRPC/Connect body to GRPCMessageDeframer in the chunking the input chooses and checks that
// what comes out is exactly the body's framing: each message is the bytes its prefix announced (or
// their inflation, within the limit), and what was not handed out stays buffered, no more.
import FuzzSupport
import NIOCore

@testable import ErdtreeRPC

// Limits the servers use (the 4 MiB default) and small ones the mutator can reach.
let limits = [0, 1, 5, 64, 1024, 4 << 20]

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.takeByte()
    let limit = limits[Int(input.takeByte()) % limits.count]
    var deframer = GRPCMessageDeframer(maxMessageBytes: limit)
    deframer.gzipAccepted = options & 1 != 0
    let chunks = input.takeChunks()
    let body = Array(chunks.joined())
    var appended = 0
    var consumed = 0
    for chunk in chunks {
        chunk.withUnsafeBytes { deframer.append($0) }
        appended += chunk.count
        do {
            while let message = try deframer.next() {
                consumed += check(message, at: consumed, of: body, limit: limit)
            }
        } catch {
            // A refused message fails the stream: its prefix must have asked for it.
            let length = Int(bigEndianLength(body, at: consumed + 1))
            let flag = body[consumed]
            fuzzCheck(
                length > limit || flag & 1 != 0,
                "refused a \(length)-byte message (flag \(flag)) within the \(limit)-byte limit: \(error)")
            return 0
        }
        fuzzCheck(
            deframer.buffer.readableBytes == appended - consumed,
            "\(deframer.buffer.readableBytes) bytes buffered, \(appended - consumed) not handed out")
        fuzzCheck(deframer.hasPartialMessage == (appended > consumed), "hasPartialMessage disagrees")
        _ = deframer.partialMessageDescription
    }
    return 0
}

/// Checks one message against the framing at `offset` of the body and returns the bytes it spans.
func check(_ message: ByteBuffer, at offset: Int, of body: [UInt8], limit: Int) -> Int {
    let flag = body[offset]
    let length = Int(bigEndianLength(body, at: offset + 1))
    fuzzCheck(length <= limit, "handed out a \(length)-byte message over the \(limit)-byte limit")
    fuzzCheck(message.readableBytes <= limit, "message of \(message.readableBytes) bytes over the limit")
    if flag & 1 == 0 {
        let framed = body[(offset + 5)..<(offset + 5 + length)]
        fuzzCheck(
            message.readableBytesView.elementsEqual(framed), "message at \(offset) differs from its framing")
    }
    return 5 + length
}

func bigEndianLength(_ body: [UInt8], at offset: Int) -> UInt32 {
    body[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
}

runFuzzer(fuzzOne)
