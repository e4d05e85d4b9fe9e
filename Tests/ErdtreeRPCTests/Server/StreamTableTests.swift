import NIOCore
import NIOEmbedded
import Testing

@testable import ErdtreeRPC

/// The per-connection call table against a dictionary doing the same operations, including
/// the streams that share a slot (ids `2 * StreamTable.slotCount` apart).
@Suite struct StreamTableTests {
    private final class Owner: ServerStreamTransport {
        func writeResponseHead(_ head: ResponseHead, hasBody: Bool, for call: ServerCall) {}
        func resumeResponse(for call: ServerCall) {}
        var isNodeServing: Bool { true }
        var observer: (any RPCObserver)? { nil }
    }

    private let owner = Owner()
    private let loop = EmbeddedEventLoop()

    private func call(_ id: Int32) -> ServerCall {
        ServerCall(
            streamID: id, transport: owner, kind: .http2, eventLoop: loop, allocator: ByteBufferAllocator(),
            maxMessageBytes: 64)
    }

    @Test func agreesWithADictionaryAcrossSlotCollisions() {
        var table = StreamTable()
        var model: [Int32: ServerCall] = [:]
        let wrap = Int32(2 * StreamTable.slotCount)
        // A long-lived stream 1, then waves of streams whose ids land on its slot and others'.
        var generator = SystemRandomNumberGenerator()
        var next: Int32 = 1
        for _ in 0..<5000 {
            if model.isEmpty || Int.random(in: 0..<3, using: &generator) > 0 {
                let id = next
                next += Bool.random(using: &generator) ? 2 : wrap
                let made = call(id)
                table.insert(made)
                model[id] = made
            } else if let id = model.keys.randomElement(using: &generator), id != 1 || model.count == 1 {
                #expect(table.remove(id) === model.removeValue(forKey: id))
            }
            #expect(table.count == model.count)
            for probe in [next - 2, next - wrap, 1, next] where probe > 0 {
                #expect(table[probe] === model[probe], "stream \(probe)")
            }
        }
        #expect(table.remove(next + 2) == nil, "never opened")
        let all = table.removeAll()
        #expect(all.map(\.streamID) == model.keys.sorted())
        #expect(table.isEmpty && table[1] == nil)
    }
}
