/// One field of a message as the wire carries it (protobuf encoding, "Message Structure").
struct WireField: Equatable {
    /// A field's value, by wire type. Length-delimited values and groups are ranges of the
    /// reader's buffer (`WireReader.bytes(_:)`, or another reader over them).
    enum Value: Equatable {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        /// A string, bytes, nested message or packed run.
        case lengthDelimited(Range<Int>)
        /// A group's fields, between its start and end tags (proto2; proto3 has none).
        case group(Range<Int>)

        /// The value a proto3 field without presence has when unset, which JSON leaves out
        /// (no group is: proto3 has no group fields).
        var isZero: Bool {
            switch self {
            case .varint(let value), .fixed64(let value): value == 0
            case .fixed32(let value): value == 0
            case .lengthDelimited(let range): range.isEmpty
            case .group: false
            }
        }
    }

    var number: UInt32
    /// Where the field's tag starts, from the start of the reader's buffer.
    var offset: Int
    var value: Value
}
