/// Reads the protobuf binary wire format (protobuf.dev/programming-guides/encoding) from a
/// borrowed buffer: a message's fields in order, or the elements of a packed field, every
/// read bounds-checked.
///
/// It never copies: a length-delimited value or a group comes back as a range of the same
/// buffer, read by another reader over that range, so every offset, in values and in errors,
/// counts from the start of the whole buffer (for a descriptor set, a byte of the set). The
/// buffer must outlive the reader. Connect's JSON codec reads every binary answer with it and
/// the codec checks request keys with it, so `next()` is on the call path; the descriptor
/// index reads the embedded descriptor set with it once, at startup.
struct WireReader {
    /// The wire types of the encoding; 3 and 4 delimit the deprecated groups.
    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case startGroup = 3
        case endGroup = 4
        case fixed32 = 5
    }

    /// The largest field number the encoding allows (2^29 - 1).
    static let maxFieldNumber: UInt64 = (1 << 29) - 1
    /// Groups nested deeper than this are refused rather than risking the stack.
    static let maxGroupDepth = 64

    /// The whole buffer: ranges and offsets index into it.
    let buffer: UnsafeRawBufferPointer
    private let end: Int
    /// Where the next field (or packed element) starts.
    private(set) var offset: Int

    /// A reader over `range` of `buffer` (the whole buffer by default).
    init(_ buffer: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.buffer = buffer
        let range = range ?? 0..<buffer.count
        self.offset = range.lowerBound
        self.end = range.upperBound
    }

    /// The next field, its value read or, for a group, stepped over; nil at the end.
    mutating func next() throws(WireError) -> WireField? {
        guard offset < end else { return nil }
        let start = offset
        let (number, wireType) = try tag()
        return WireField(number: number, offset: start, value: try value(wireType, number: number, at: start, depth: 0))
    }

    /// The next element of a packed field whose elements have `wireType` (varint, fixed32 or
    /// fixed64); nil at the end.
    mutating func element(_ wireType: WireType) throws(WireError) -> WireField.Value? {
        guard offset < end else { return nil }
        switch wireType {
        case .fixed32: return .fixed32(try fixed32())
        case .fixed64: return .fixed64(try fixed64())
        default: return .varint(try varint())
        }
    }

    /// The bytes of `range`, a length-delimited value this reader returned.
    func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[range])
    }

    /// The bytes of `range` as a string (descriptor names are UTF-8; bad bytes become U+FFFD).
    func string(_ range: Range<Int>) -> String {
        String(decoding: bytes(range), as: UTF8.self)
    }

    private mutating func tag() throws(WireError) -> (number: UInt32, wireType: WireType) {
        let start = offset
        let key = try varint()
        guard let wireType = WireType(rawValue: UInt8(truncatingIfNeeded: key & 7)) else {
            throw WireError(offset: start, reason: .unknownWireType(UInt8(truncatingIfNeeded: key & 7)))
        }
        let number = key >> 3
        guard number != 0 else { throw WireError(offset: start, reason: .fieldNumberZero) }
        guard number <= Self.maxFieldNumber else {
            throw WireError(offset: start, reason: .fieldNumberTooLarge(number))
        }
        return (UInt32(truncatingIfNeeded: number), wireType)
    }

    private mutating func value(
        _ wireType: WireType, number: UInt32, at start: Int, depth: Int
    ) throws(WireError) -> WireField.Value {
        switch wireType {
        case .varint: return .varint(try varint())
        case .fixed64: return .fixed64(try fixed64())
        case .lengthDelimited: return .lengthDelimited(try lengthDelimited())
        case .fixed32: return .fixed32(try fixed32())
        case .startGroup: return .group(try group(number, depth: depth))
        case .endGroup: throw WireError(offset: start, reason: .groupEndWithoutStart(number))
        }
    }

    /// A base-128 varint, at most 10 bytes.
    private mutating func varint() throws(WireError) -> UInt64 {
        // Most varints (tags, lengths, small numbers) are one byte.
        if offset < end, buffer[offset] < 0x80 {
            offset += 1
            return UInt64(buffer[offset - 1])
        }
        let start = offset
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < end {
            let byte = buffer[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) &<< shift
            if byte < 0x80 { return value }
            shift += 7
            guard shift < 70 else { throw WireError(offset: start, reason: .varintTooLong) }
        }
        throw WireError(offset: start, reason: .varintPastEnd)
    }

    /// The range of a length-delimited value, which the reader steps over.
    private mutating func lengthDelimited() throws(WireError) -> Range<Int> {
        let start = offset
        let length = try varint()
        guard length <= UInt64(end - offset) else {
            throw WireError(offset: start, reason: .lengthPastEnd(length: length, remaining: end - offset))
        }
        let range = offset..<offset + Int(length)
        offset = range.upperBound
        return range
    }

    private mutating func fixed64() throws(WireError) -> UInt64 {
        try advance(by: 8)
        return UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset - 8, as: UInt64.self))
    }

    private mutating func fixed32() throws(WireError) -> UInt32 {
        try advance(by: 4)
        return UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset - 4, as: UInt32.self))
    }

    private mutating func advance(by count: Int) throws(WireError) {
        guard count <= end - offset else { throw WireError(offset: offset, reason: .fixedPastEnd) }
        offset += count
    }

    /// The range of a group's fields, up to its end tag, which the reader steps over.
    private mutating func group(_ number: UInt32, depth: Int) throws(WireError) -> Range<Int> {
        guard depth < Self.maxGroupDepth else {
            throw WireError(offset: offset, reason: .groupsTooDeep(limit: Self.maxGroupDepth))
        }
        let contents = offset
        while offset < end {
            let start = offset
            let (inner, wireType) = try tag()
            if wireType == .endGroup {
                guard inner == number else {
                    throw WireError(offset: start, reason: .groupClosedAs(group: number, closing: inner))
                }
                return contents..<start
            }
            _ = try value(wireType, number: inner, at: start, depth: depth + 1)
        }
        throw WireError(offset: offset, reason: .groupNotClosed(number))
    }
}
