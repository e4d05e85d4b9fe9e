internal import CProtobufC
import ErdtreeRPC
import ErdtreeSync
import NIOCore

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
enum ProtoJSON {
    /// What is wrong with a document (or, encoding, with a binary message), for an
    /// INVALID_ARGUMENT answer.
    struct Failure: Error, Equatable {
        var message: String
    }

    typealias Descriptor = UnsafePointer<ProtobufCMessageDescriptor>

    /// The JSON text of the binary message `bytes` of type `descriptor`.
    static func encode(_ bytes: UnsafeRawBufferPointer, as descriptor: Descriptor) throws(Failure) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2 + 32)
        do throws(WireError) {
            try writeMessage(bytes, 0..<bytes.count, descriptor, to: &out)
        } catch {
            throw Failure(message: "cannot encode \(name(of: descriptor)) as JSON: not a valid binary message")
        }
        return out
    }

    /// The binary encoding of the JSON document `json` as a message of type `descriptor`.
    static func decode(_ json: [UInt8], as descriptor: Descriptor) throws(Failure) -> [UInt8] {
        try json.withUnsafeBytes { raw in
            Result { () throws(Failure) in
                try decode(raw, as: descriptor) { size, pack in
                    [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                        if let start = buffer.baseAddress { pack(start) }
                        count = size
                    }
                }
            }
        }.get()
    }

    /// The same, read from and written to byte buffers (the transport's), with no copy between.
    static func decode(_ json: ByteBuffer, as descriptor: Descriptor, allocator: ByteBufferAllocator)
        throws(Failure) -> ByteBuffer
    {
        try json.withUnsafeReadableBytes { raw in
            Result { () throws(Failure) in
                try decode(raw, as: descriptor) { size, pack in
                    var out = allocator.buffer(capacity: size)
                    out.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { target in
                        if let start = target.baseAddress { pack(start.assumingMemoryBound(to: UInt8.self)) }
                        return size
                    }
                    return out
                }
            }
        }.get()
    }

    /// Parses `json` and builds the message, then hands its packed size to `output`, which
    /// packs it (the closure it gets) into storage of its choosing.
    private static func decode<Output>(
        _ json: UnsafeRawBufferPointer, as descriptor: Descriptor,
        output: (Int, (UnsafeMutablePointer<UInt8>) -> Void) -> Output
    ) throws(Failure) -> Output {
        let document: JSONValue
        do {
            document = try JSONParser.parse(json)
        } catch {
            throw Failure(message: error.description)
        }
        return try CArena.withStackBlock { arena throws(Failure) in
            let message = try readMessage(document, descriptor, path: { name(of: descriptor) }, arena: &arena)
            let base = message.assumingMemoryBound(to: ProtobufCMessage.self)
            return output(protobuf_c_message_get_packed_size(base)) { _ = protobuf_c_message_pack(base, $0) }
        }
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

    /// Built so far, by descriptor: a few dozen message types, so a list searched by pointer
    /// (cheaper than hashing, twice per call) rather than a dictionary.
    private static let fieldNames = Locked<[(key: Int, names: FieldNames)]>([])

    static func names(of descriptor: Descriptor) -> FieldNames {
        let key = Int(bitPattern: descriptor)
        let known = fieldNames.withLock { list in list.first { $0.key == key }?.names }
        if let known { return known }
        let proto = fields(of: descriptor).map { String(cString: $0.name) }
        let json = proto.map(jsonName)
        let prefixes = json.map { name in
            var prefix: [UInt8] = []
            JSONWriter.appendString(name, to: &prefix)
            prefix.append(UInt8(ascii: ":"))
            return prefix
        }
        let built = FieldNames(proto: proto, json: json, memberPrefix: prefixes)
        fieldNames.withLock { list in
            if !list.contains(where: { $0.key == key }) { list.append((key, built)) }
        }
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
