// Decodes bytes as one of the api/ messages (the first byte picks which) through ProtobufCCodec,
// as the services do, and where that succeeds requires the re-encoding to be stable: packed again it
// decodes and packs to the same bytes, and the wire reader's walk of it (the JSON encoder) agrees.
import CProtobufC
import ErdtreeRPC
import FuzzSupport
import NIOCore

@testable import ErdtreeProtobuf

// Every request and response type a server or client of ours decodes, in the table's order.
// Immutable C descriptors, read from the one thread libFuzzer runs inputs on.
nonisolated(unsafe) let messageTypes = MethodTable.embedded.entries.flatMap {
    [$0.transcoder.input, $0.transcoder.output]
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let type = input.takeChoice(of: messageTypes)
    let name = ProtoJSON.name(of: type)
    guard let (packed, unknown) = try? repacked(ByteBuffer(bytes: input.takeRest()), as: type) else { return 0 }
    // protobuf-c takes unknown fields more leniently than the encoding allows (tags past 32 bits,
    // truncated, even to field number 0) and packs them back as it read them, so neither its own
    // round trip nor WireReader's stricter reading holds for them. Only a peer's message has them,
    // and the services ignore them; the checks below are for what the schema declares.
    guard !unknown else { return 0 }
    let again: [UInt8]
    do {
        again = try repacked(ByteBuffer(bytes: packed), as: type).bytes
    } catch {
        fatalError("\(name): protobuf-c's own encoding \(packed) does not decode: \(error)")
    }
    fuzzCheck(again == packed, "\(name): \(packed) decodes and packs to \(again)")
    // The JSON encoder reads the binary with WireReader: what protobuf-c packed it must read, and
    // the JSON must come back from the decoder unchanged.
    do {
        let json = try packed.withUnsafeBytes { try ProtoJSON.encode($0, as: type) }
        let binary = try ProtoJSON.decode(json, as: type)
        let jsonAgain = try binary.withUnsafeBytes { try ProtoJSON.encode($0, as: type) }
        fuzzCheck(
            jsonAgain == json,
            "\(name): JSON \(String(decoding: json, as: UTF8.self)) comes back as \(String(decoding: jsonAgain, as: UTF8.self))"
        )
    } catch {
        fatalError("\(name): protobuf-c's encoding \(packed) does not go through JSON: \(error)")
    }
    return 0
}

/// Unpacks `buffer` with the codec and packs the message again; says whether it held unknown fields.
func repacked(_ buffer: ByteBuffer, as type: ProtoJSON.Descriptor) throws(RPCStatus) -> (bytes: [UInt8], unknown: Bool)
{
    try ProtobufCCodec.withUnpacked(
        buffer, typeName: "fuzzed message",
        unpack: { (allocator: UnsafeMutablePointer<ProtobufCAllocator>, count, bytes) in
            protobuf_c_message_unpack(type, allocator, count, bytes)
        }
    ) { message in
        let size = protobuf_c_message_get_packed_size(message)
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            if let start = buffer.baseAddress { count = protobuf_c_message_pack(message, start) }
        }
        return (bytes, hasUnknownFields(message))
    }
}

/// Whether `message` or any message inside it holds fields its descriptor does not declare.
func hasUnknownFields(_ message: UnsafePointer<ProtobufCMessage>) -> Bool {
    if message.pointee.n_unknown_fields > 0 { return true }
    let base = UnsafeRawPointer(message)
    for field in ProtoJSON.fields(of: message.pointee.descriptor) where field.type == PROTOBUF_C_TYPE_MESSAGE {
        if ProtoJSON.isOneof(field),
            base.load(fromByteOffset: Int(field.quantifier_offset), as: UInt32.self) != field.id
        {
            continue
        }
        let count =
            field.label == PROTOBUF_C_LABEL_REPEATED
            ? base.load(fromByteOffset: Int(field.quantifier_offset), as: Int.self) : 1
        let slot = base.load(fromByteOffset: Int(field.offset), as: UnsafeRawPointer?.self)
        let members: [UnsafeRawPointer?] =
            field.label == PROTOBUF_C_LABEL_REPEATED
            ? (0..<count).map {
                slot?.load(fromByteOffset: $0 * MemoryLayout<UnsafeRawPointer>.stride, as: UnsafeRawPointer?.self)
            }
            : [slot]
        if members.contains(where: {
            $0.map { hasUnknownFields($0.assumingMemoryBound(to: ProtobufCMessage.self)) } ?? false
        }) {
            return true
        }
    }
    return false
}

runFuzzer(fuzzOne)
