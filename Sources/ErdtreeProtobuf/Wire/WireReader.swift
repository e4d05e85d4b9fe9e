internal import CProtobufC

/// The bytes are not a well-formed message of the type they were said to be.
struct WireError: Error {}

/// One field's value as the wire carries it (protobuf encoding, "Message Structure").
enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes(UnsafeRawBufferPointer)

    var isZero: Bool {
        switch self {
        case .varint(let value), .fixed64(let value): value == 0
        case .fixed32(let value): value == 0
        case .bytes(let bytes): bytes.isEmpty
        }
    }
}

/// Reads a message's fields (tag, then value) or a packed field's elements, bounds-checked.
struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The next field's number and value; nil at the end.
    mutating func next() throws(WireError) -> (number: UInt32, value: WireValue)? {
        guard index < bytes.count else { return nil }
        let key = try varint()
        let number = key >> 3
        guard number > 0, number < 1 << 29 else { throw WireError() }
        let value: WireValue
        switch key & 7 {
        case 0: value = .varint(try varint())
        case 1: value = .fixed64(try fixed(8))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.count - index) else { throw WireError() }
            value = .bytes(UnsafeRawBufferPointer(rebasing: bytes[index..<index + Int(length)]))
            index += Int(length)
        case 5: value = .fixed32(UInt32(truncatingIfNeeded: try fixed(4)))
        default: throw WireError()  // groups (3, 4) are not proto3; 6 and 7 do not exist
        }
        return (UInt32(number), value)
    }

    /// The next element of a packed field of `type`; nil at the end.
    mutating func element(of type: ProtobufCType) throws(WireError) -> WireValue? {
        guard index < bytes.count else { return nil }
        switch type {
        case PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_FLOAT:
            return .fixed32(UInt32(truncatingIfNeeded: try fixed(4)))
        case PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
            return .fixed64(try fixed(8))
        default:
            return .varint(try varint())
        }
    }

    private mutating func varint() throws(WireError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count, shift < 64 {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        throw WireError()
    }

    private mutating func fixed(_ size: Int) throws(WireError) -> UInt64 {
        guard bytes.count - index >= size else { throw WireError() }
        var value: UInt64 = 0
        for offset in 0..<size { value |= UInt64(bytes[index + offset]) << (8 * UInt64(offset)) }
        index += size
        return value
    }
}
