import NIOCore

extension ByteBuffer {
    /// The readable bytes, for comparing with an expected array.
    var allBytes: [UInt8] {
        getBytes(at: readerIndex, length: readableBytes) ?? []
    }
}

/// A gRPC Length-Prefixed-Message: uncompressed flag, 4-byte big-endian length, payload.
func framed(_ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        + payload
}
