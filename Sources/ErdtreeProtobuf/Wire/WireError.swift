/// The bytes are not a well-formed message (of the type they were said to be): where, from
/// the start of the whole buffer read, and why.
struct WireError: Error, Equatable, CustomStringConvertible {
    enum Reason: Equatable, CustomStringConvertible {
        case varintTooLong
        case varintPastEnd
        case lengthPastEnd(length: UInt64, remaining: Int)
        case fixedPastEnd
        case fieldNumberZero
        case fieldNumberTooLarge(UInt64)
        case unknownWireType(UInt8)
        case groupNotClosed(UInt32)
        case groupClosedAs(group: UInt32, closing: UInt32)
        case groupEndWithoutStart(UInt32)
        case groupsTooDeep(limit: Int)
        /// A message type's reader found a wire type the field's declared type cannot have.
        case wrongWireType(field: UInt32)
        /// A message type's reader found messages nested deeper than it reads.
        case messagesTooDeep(limit: Int)

        var description: String {
            switch self {
            case .varintTooLong: "varint longer than 10 bytes"
            case .varintPastEnd: "varint runs past the end of its message"
            case .lengthPastEnd(let length, let remaining):
                "length \(length) runs past the end of its message (\(remaining) bytes left)"
            case .fixedPastEnd: "fixed-width value runs past the end of its message"
            case .fieldNumberZero: "field number 0"
            case .fieldNumberTooLarge(let number): "field number \(number) is larger than 2^29 - 1"
            case .unknownWireType(let wireType): "unknown wire type \(wireType)"
            case .groupNotClosed(let group): "group \(group) is not closed"
            case .groupClosedAs(let group, let closing): "group \(group) closed as \(closing)"
            case .groupEndWithoutStart(let group): "end of group \(group) without a start"
            case .groupsTooDeep(let limit): "groups nested deeper than \(limit) levels"
            case .wrongWireType(let field): "field \(field) has a wire type its declared type cannot have"
            case .messagesTooDeep(let limit): "messages nested deeper than \(limit) levels"
            }
        }
    }

    var offset: Int
    var reason: Reason

    var description: String { "malformed protobuf at byte \(offset): \(reason)" }
}
