/// A cursor over protobuf binary wire format in a borrowed buffer: just what
/// walking descriptor messages needs (varints and length-delimited fields;
/// everything else is skipped).
///
/// It never copies: a length-delimited field comes back as a byte range of
/// the same buffer, so nested messages are read by another reader over that
/// range. The buffer must stay valid while the reader is used. Offsets in
/// errors are from the start of the buffer, so they point into the whole
/// descriptor set. See https://protobuf.dev/programming-guides/encoding/.
struct ProtobufWireReader {
    /// The wire types of the encoding; 3 and 4 are the deprecated groups.
    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case startGroup = 3
        case endGroup = 4
        case fixed32 = 5
    }

    /// A field's key: its number and how its value is encoded.
    struct FieldKey {
        var number: UInt64
        var wireType: WireType
    }

    private let buffer: UnsafeRawBufferPointer
    private let end: Int
    private var offset: Int

    /// A reader over `range` of `buffer` (the whole buffer by default).
    init(_ buffer: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.buffer = buffer
        let range = range ?? 0..<buffer.count
        self.offset = range.lowerBound
        self.end = range.upperBound
    }

    /// The next field's key, or nil at the end of the range.
    mutating func nextField() throws(DescriptorSetError) -> FieldKey? {
        guard offset < end else { return nil }
        let keyOffset = offset
        let key = try readVarint()
        guard let wireType = WireType(rawValue: UInt8(truncatingIfNeeded: key & 0x7)) else {
            throw .malformed(offset: keyOffset, reason: "unknown wire type \(key & 0x7)")
        }
        let number = key >> 3
        guard number != 0 else {
            throw .malformed(offset: keyOffset, reason: "field number 0")
        }
        return FieldKey(number: number, wireType: wireType)
    }

    /// A base-128 varint, at most 10 bytes.
    mutating func readVarint() throws(DescriptorSetError) -> UInt64 {
        let start = offset
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < end {
            let byte = buffer[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift >= 70 {
                throw .malformed(offset: start, reason: "varint longer than 10 bytes")
            }
        }
        throw .malformed(offset: start, reason: "varint runs past the end of its message")
    }

    /// The byte range of a length-delimited value, which the reader steps over.
    mutating func readLengthDelimited() throws(DescriptorSetError) -> Range<Int> {
        let start = offset
        let length = try readVarint()
        guard length <= UInt64(end - offset) else {
            throw .malformed(
                offset: start,
                reason: "length \(length) runs past the end of its message (\(end - offset) bytes left)"
            )
        }
        let range = offset..<(offset + Int(length))
        offset = range.upperBound
        return range
    }

    /// A length-delimited value as a string; descriptor names are UTF-8.
    mutating func readString() throws(DescriptorSetError) -> String {
        let range = try readLengthDelimited()
        return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[range]), as: UTF8.self)
    }

    /// Steps over the value of a field this reader's caller does not need.
    mutating func skip(_ key: FieldKey) throws(DescriptorSetError) {
        switch key.wireType {
        case .varint:
            _ = try readVarint()
        case .fixed64:
            try advance(by: 8)
        case .fixed32:
            try advance(by: 4)
        case .lengthDelimited:
            _ = try readLengthDelimited()
        case .startGroup:
            while true {
                let groupOffset = offset
                guard let inner = try nextField() else {
                    throw .malformed(offset: groupOffset, reason: "group \(key.number) is not closed")
                }
                if inner.wireType == .endGroup {
                    guard inner.number == key.number else {
                        throw .malformed(
                            offset: groupOffset,
                            reason: "group \(key.number) closed as \(inner.number)"
                        )
                    }
                    return
                }
                try skip(inner)
            }
        case .endGroup:
            throw .malformed(offset: offset, reason: "end of group \(key.number) without a start")
        }
    }

    private mutating func advance(by count: Int) throws(DescriptorSetError) {
        guard count <= end - offset else {
            throw .malformed(offset: offset, reason: "fixed-width value runs past the end of its message")
        }
        offset += count
    }
}
