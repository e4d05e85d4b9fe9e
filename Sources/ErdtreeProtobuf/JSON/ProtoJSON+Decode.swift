internal import CProtobufC
import ErdtreeRPC

/// JSON value → protobuf-c message built in an arena (then packed by `ProtoJSON.decode`).
extension ProtoJSON {
    /// `path` names the message for errors (built only when one is thrown).
    static func readMessage(
        _ json: JSONValue, _ descriptor: Descriptor, path: () -> String, arena: inout CArena
    ) throws(Failure) -> UnsafeMutableRawPointer {
        guard case .object(let members) = json else {
            throw Failure(message: "\(path()): expected a JSON object, got \(kind(json))")
        }
        let message = arena.allocate(bytes: descriptor.pointee.sizeof_message)
        descriptor.pointee.message_init?(message.assumingMemoryBound(to: ProtobufCMessage.self))
        let fields = fields(of: descriptor)
        let names = names(of: descriptor)
        // Which fields were given (a bit each for the first 64, which is every message here;
        // a list past that), and each oneof's member by its case offset.
        var seenMask: UInt64 = 0
        var seenMore: [Int] = []
        var oneofs: [(offset: UInt32, name: String)] = []
        for (key, value) in members {
            guard let index = names.json.firstIndex(of: key) ?? names.proto.firstIndex(of: key) else {
                throw Failure(message: "\(path()): unknown field \"\(key)\"")
            }
            let field = fields[index]
            let protoName = names.proto[index]
            let seenBefore: Bool
            if index < 64 {
                seenBefore = seenMask & (1 << UInt64(index)) != 0
                seenMask |= 1 << UInt64(index)
            } else {
                seenBefore = seenMore.contains(index)
                seenMore.append(index)
            }
            guard !seenBefore else {
                throw Failure(message: "\(path()): field \"\(protoName)\" is given twice")
            }
            if case .null = value { continue }  // proto3 JSON: null is the default
            func fieldPath() -> String { "\(path()).\(protoName)" }
            let slot = message + Int(field.offset)
            let quantifier = message + Int(field.quantifier_offset)
            if field.label == PROTOBUF_C_LABEL_REPEATED {
                guard case .array(let elements) = value else {
                    throw Failure(message: "\(fieldPath()): expected a JSON array, got \(kind(value))")
                }
                let stride = elementSize(field.type)
                let storage = arena.allocate(bytes: stride * elements.count)
                for (index, element) in elements.enumerated() {
                    try readValue(
                        element, field, into: storage + index * stride, path: { "\(fieldPath())[\(index)]" }, &arena)
                }
                quantifier.storeBytes(of: elements.count, as: Int.self)
                slot.storeBytes(of: storage, as: UnsafeMutableRawPointer.self)
                continue
            }
            if isOneof(field) {
                if let other = oneofs.first(where: { $0.offset == field.quantifier_offset }) {
                    throw Failure(
                        message: "\(path()): \"\(other.name)\" and \"\(protoName)\" belong to one oneof; give one")
                }
                oneofs.append((field.quantifier_offset, protoName))
                quantifier.storeBytes(of: field.id, as: UInt32.self)
            } else if field.label == PROTOBUF_C_LABEL_OPTIONAL, field.type != PROTOBUF_C_TYPE_MESSAGE,
                field.type != PROTOBUF_C_TYPE_STRING
            {
                quantifier.storeBytes(of: 1, as: Int32.self)
            }
            try readValue(value, field, into: slot, path: fieldPath, &arena)
        }
        return message
    }

    private static func readValue(
        _ json: JSONValue, _ field: ProtobufCFieldDescriptor, into slot: UnsafeMutableRawPointer, path: () -> String,
        _ arena: inout CArena
    ) throws(Failure) {
        switch field.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
            slot.storeBytes(of: try integer(json, Int32.self, path), as: Int32.self)
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            slot.storeBytes(of: try integer(json, UInt32.self, path), as: UInt32.self)
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            slot.storeBytes(of: try integer(json, Int64.self, path), as: Int64.self)
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            slot.storeBytes(of: try integer(json, UInt64.self, path), as: UInt64.self)
        case PROTOBUF_C_TYPE_FLOAT:
            let number = try floating(json, path)
            guard !number.isFinite || abs(number) <= Double(Float.greatestFiniteMagnitude) else {
                throw Failure(message: "\(path()): \(number) is out of range for a float")
            }
            slot.storeBytes(of: Float(number), as: Float.self)
        case PROTOBUF_C_TYPE_DOUBLE:
            slot.storeBytes(of: try floating(json, path), as: Double.self)
        case PROTOBUF_C_TYPE_BOOL:
            guard case .bool(let flag) = json else {
                throw Failure(message: "\(path()): expected true or false, got \(kind(json))")
            }
            slot.storeBytes(of: flag ? 1 : 0, as: Int32.self)
        case PROTOBUF_C_TYPE_ENUM:
            slot.storeBytes(of: try enumValue(json, field, path), as: Int32.self)
        case PROTOBUF_C_TYPE_STRING:
            guard case .string(var text) = json else {
                throw Failure(message: "\(path()): expected a string, got \(kind(json))")
            }
            let copy = text.withUTF8 { utf8 in
                // protobuf-c strings end at their first NUL.
                utf8.contains(0) ? nil : arena.cString(UnsafeRawBufferPointer(utf8))
            }
            guard let copy else { throw Failure(message: "\(path()): a string may not contain U+0000") }
            slot.storeBytes(of: copy, as: UnsafeMutablePointer<CChar>.self)
        case PROTOBUF_C_TYPE_BYTES:
            guard case .string(let text) = json, let bytes = Base64.decode(text) else {
                throw Failure(message: "\(path()): expected base64 bytes in a string, got \(kind(json))")
            }
            slot.storeBytes(
                of: ProtobufCBinaryData(len: bytes.count, data: arena.copy(bytes)), as: ProtobufCBinaryData.self)
        case PROTOBUF_C_TYPE_MESSAGE:
            let nested = field.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            slot.storeBytes(
                of: try readMessage(json, nested, path: path, arena: &arena), as: UnsafeMutableRawPointer.self)
        default:
            throw Failure(message: "\(path()): this field's type is not supported in JSON")
        }
    }

    private static func integer<T: FixedWidthInteger>(
        _ json: JSONValue, _ type: T.Type, _ path: () -> String
    ) throws(Failure) -> T {
        let text: String
        switch json {
        case .number(let number): text = number
        case .string(let string): text = string
        default: throw Failure(message: "\(path()): expected an integer, got \(kind(json))")
        }
        if let value = T(text) { return value }
        // proto3 JSON also takes integral values written with a fraction or exponent ("1e3").
        if let number = Double(text), number.isFinite, number == number.rounded(), let value = T(exactly: number) {
            return value
        }
        throw Failure(message: "\(path()): \(text) is not an integer in the range of \(T.self)")
    }

    private static func floating(_ json: JSONValue, _ path: () -> String) throws(Failure) -> Double {
        switch json {
        case .number(let text):
            if let number = Double(text) { return number }
        case .string("NaN"): return .nan
        case .string("Infinity"): return .infinity
        case .string("-Infinity"): return -.infinity
        case .string(let text):
            if let number = Double(text), number.isFinite { return number }
        default: break
        }
        throw Failure(message: "\(path()): expected a number, got \(kind(json))")
    }

    private static func enumValue(
        _ json: JSONValue, _ field: ProtobufCFieldDescriptor, _ path: () -> String
    ) throws(Failure) -> Int32 {
        let descriptor = field.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self).pointee
        let values = UnsafeBufferPointer(start: descriptor.values, count: Int(descriptor.n_values))
        switch json {
        case .string(let name):
            guard let match = values.first(where: { String(cString: $0.name) == name }) else {
                let known = values.map { String(cString: $0.name) }.joined(separator: ", ")
                throw Failure(message: "\(path()): \"\(name)\" is not one of \(known)")
            }
            return match.value
        case .number:
            // Open enums: any number in range is kept, known or not.
            return try integer(json, Int32.self, path)
        default:
            throw Failure(message: "\(path()): expected an enum name, got \(kind(json))")
        }
    }

    static func kind(_ json: JSONValue) -> String {
        switch json {
        case .null: "null"
        case .bool: "a boolean"
        case .number(let text): "the number \(text)"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
