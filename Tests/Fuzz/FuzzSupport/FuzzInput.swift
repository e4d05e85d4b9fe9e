/// The fuzzer's input, consumed from the front: harnesses take their choices (a message type, a
/// chunking, a flag) from the first bytes and hand the rest to the code under test, so the mutator
/// explores choices and payload together.
public struct FuzzInput {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = ArraySlice(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    }

    public init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    /// The next byte, or 0 once the input is used up, so short inputs still make a choice.
    public mutating func takeByte() -> UInt8 {
        bytes.popFirst() ?? 0
    }

    /// At most `count` bytes from the front.
    public mutating func take(_ count: Int) -> ArraySlice<UInt8> {
        let taken = bytes.prefix(count)
        bytes = bytes.dropFirst(taken.count)
        return taken
    }

    /// Everything not yet taken.
    public mutating func takeRest() -> ArraySlice<UInt8> {
        defer { bytes = bytes[bytes.endIndex...] }
        return bytes
    }

    /// Takes a chunking from the input — one byte giving how many chunk sizes follow (0–7), then
    /// those sizes (1–256 bytes each) — and splits the rest of the input into chunks by cycling
    /// through them. No sizes means one chunk with everything.
    public mutating func takeChunks() -> [ArraySlice<UInt8>] {
        let sizes = take(Int(takeByte() % 8)).map { Int($0) + 1 }
        var payload = takeRest()
        guard !sizes.isEmpty else { return payload.isEmpty ? [] : [payload] }
        var chunks: [ArraySlice<UInt8>] = []
        var next = 0
        while !payload.isEmpty {
            let chunk = payload.prefix(sizes[next % sizes.count])
            chunks.append(chunk)
            payload = payload.dropFirst(chunk.count)
            next += 1
        }
        return chunks
    }
}
