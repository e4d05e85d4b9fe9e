import CProtobufC
import Synchronization

/// The proto3 JSON mapping, done from protobuf-c's descriptors for any message: no
/// per-message JSON code. It transcodes: JSON in becomes the binary encoding the services
/// already decode, and their binary answers become JSON out.
///
/// Output: lowerCamelCase member names, fields at their default left out (proto3), 64-bit
/// integers as strings, bytes as standard base64 with padding, enums by name, NaN and the
/// infinities as strings. Input: both the lowerCamelCase and the proto field name; integers as
/// numbers or strings; bytes as standard or URL-safe base64, padded or not; enums by name or
/// number; `null` for "default". Unknown members, members given twice, two members of one
/// oneof, wrong types and out-of-range numbers are refused with a message naming the field.
package enum ProtoJSON {
    /// What is wrong with a document (or, encoding, with a binary message), for an
    /// INVALID_ARGUMENT answer.
    package struct Failure: Error, Equatable {
        package var message: String
    }

    package typealias Descriptor = UnsafePointer<ProtobufCMessageDescriptor>

    /// The JSON text of the binary message `bytes` of type `descriptor`.
    package static func encode(_ bytes: UnsafeRawBufferPointer, as descriptor: Descriptor) throws(Failure) -> [UInt8] {
        // Unpacked into an arena: one block for the whole message instead of a malloc per part.
        let arena = CArena()
        defer { arena.free() }
        var allocator = ProtobufCAllocator(
            alloc: { data, size in
                guard let data else { return nil }
                return Unmanaged<CArena>.fromOpaque(data).takeUnretainedValue().allocate(bytes: size)
            },
            free: { _, _ in },  // released with the arena
            allocator_data: Unmanaged.passUnretained(arena).toOpaque())
        let unpacked = withExtendedLifetime(arena) {
            protobuf_c_message_unpack(
                descriptor, &allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        guard let message = unpacked else {
            throw Failure(message: "cannot encode \(name(of: descriptor)) as JSON: not a valid binary message")
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2 + 16)
        writeMessage(UnsafeRawPointer(message), descriptor, to: &out)
        return out
    }

    /// The binary encoding of the JSON document `json` as a message of type `descriptor`.
    package static func decode(_ json: [UInt8], as descriptor: Descriptor) throws(Failure) -> [UInt8] {
        let document: JSONValue
        do {
            document = try JSONParser.parse(json)
        } catch {
            throw Failure(message: error.description)
        }
        let arena = CArena()
        defer { arena.free() }
        let message = try readMessage(document, descriptor, path: { name(of: descriptor) }, arena: arena)
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(base)
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBufferPointer { buffer in
            guard let start = buffer.baseAddress else { return }
            _ = protobuf_c_message_pack(base, start)
        }
        return out
    }

    static func name(of descriptor: Descriptor) -> String {
        String(cString: descriptor.pointee.name)
    }

    /// A message type's field names, in descriptor order, built once per type.
    /// A class: handed out per message, so one reference to count rather than three arrays.
    final class FieldNames: Sendable {
        let proto: [String]
        let json: [String]
        /// `"jsonName":`, ready to write.
        let memberPrefix: [[UInt8]]

        init(proto: [String], json: [String], memberPrefix: [[UInt8]]) {
            self.proto = proto
            self.json = json
            self.memberPrefix = memberPrefix
        }
    }

    private static let fieldNames = Mutex<[Int: FieldNames]>([:])

    static func names(of descriptor: Descriptor) -> FieldNames {
        let key = Int(bitPattern: descriptor)
        if let known = fieldNames.withLock({ $0[key] }) { return known }
        let proto = fields(of: descriptor).map { String(cString: $0.name) }
        let json = proto.map(jsonName)
        let prefixes = json.map { name in
            var prefix: [UInt8] = []
            JSONWriter.appendString(name, to: &prefix)
            prefix.append(UInt8(ascii: ":"))
            return prefix
        }
        let built = FieldNames(proto: proto, json: json, memberPrefix: prefixes)
        fieldNames.withLock { $0[key] = built }
        return built
    }

    /// The proto3 JSON name: underscores dropped, the letter after each one upper-cased.
    static func jsonName(_ protoName: String) -> String {
        var out = ""
        var upperNext = false
        for character in protoName {
            if character == "_" {
                upperNext = true
            } else if upperNext {
                out += character.uppercased()
                upperNext = false
            } else {
                out.append(character)
            }
        }
        return out
    }

    static func fields(of descriptor: Descriptor) -> UnsafeBufferPointer<ProtobufCFieldDescriptor> {
        UnsafeBufferPointer(start: descriptor.pointee.fields, count: Int(descriptor.pointee.n_fields))
    }

    static func isOneof(_ field: ProtobufCFieldDescriptor) -> Bool {
        field.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0
    }

    /// Bytes one element of `type` takes in a protobuf-c struct or repeated array.
    static func elementSize(_ type: ProtobufCType) -> Int {
        switch type {
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_UINT64,
            PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
            8
        case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE: MemoryLayout<UnsafeRawPointer>.stride
        case PROTOBUF_C_TYPE_BYTES: MemoryLayout<ProtobufCBinaryData>.stride
        default: 4
        }
    }
}
