import CProtobufC
import Foundation
import Testing

@testable import ErdtreeProtobuf

/// ProtoJSON decode(encode(m)) == m for random messages of every api/ type, generated from the
/// protobuf-c descriptors: every field kind the schema has (strings with non-ASCII and escapes,
/// bytes, 64-bit extremes, enums known and unknown, repeated, oneofs, nested messages).
/// `ERDTREE_SEED=<n>` replays a run; a failure names its seed.
@Suite struct ProtoJSONRoundTripTests {
    @Test func decodingTheEncodingOfAGeneratedMessageGivesTheMessageBack() throws {
        let seed =
            ProcessInfo.processInfo.environment["ERDTREE_SEED"].flatMap(UInt64.init) ?? .random(in: 0...UInt64.max)
        var generator = MessageGenerator(seed: seed)
        let types = MethodTable.embedded.entries.flatMap { [$0.transcoder.input, $0.transcoder.output] }
        var failures = 0
        var withFields = 0
        for round in 0..<3000 where failures < 5 {
            let type = types[round % types.count]
            let name = ProtoJSON.name(of: type)
            let message = try #require(canonical(generator.message(type), type), "seed \(seed): generated \(name)")
            do {
                let json = try message.withUnsafeBytes { try ProtoJSON.encode($0, as: type) }
                let text = String(decoding: json, as: UTF8.self)
                let decoded = try ProtoJSON.decode(json, as: type)
                if decoded != message { failures += 1 }
                if !message.isEmpty { withFields += 1 }
                #expect(
                    decoded == message,
                    "seed \(seed), round \(round): \(name) \(text) decodes to \(decoded), not \(message)")
            } catch {
                failures += 1
                Issue.record("seed \(seed), round \(round): \(name) \(message): \(error)")
            }
        }
        // A generator that left every field out would prove nothing (a third of the types have none).
        #expect(withFields > 1500, "seed \(seed): only \(withFields) of 3000 messages had a field")
    }

    /// The message as protobuf-c packs it (fields in its order, proto3 defaults left out), which is
    /// what `ProtoJSON.decode` produces; nil when protobuf-c cannot read `bytes`.
    private func canonical(_ bytes: [UInt8], _ type: ProtoJSON.Descriptor) -> [UInt8]? {
        guard
            let message = bytes.withUnsafeBufferPointer({
                protobuf_c_message_unpack(type, nil, $0.count, $0.baseAddress)
            })
        else { return nil }
        defer { protobuf_c_message_free_unpacked(message, nil) }
        return [UInt8](unsafeUninitializedCapacity: protobuf_c_message_get_packed_size(message)) { buffer, count in
            if let start = buffer.baseAddress { count = protobuf_c_message_pack(message, start) } else { count = 0 }
        }
    }
}

/// Writes random binary messages from protobuf-c descriptors.
private struct MessageGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    /// SplitMix64: small, seedable, and the same on every platform.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    mutating func message(_ type: ProtoJSON.Descriptor, depth: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        var oneofsSet = Set<UInt32>()
        for field in ProtoJSON.fields(of: type) {
            if ProtoJSON.isOneof(field) {
                // One member per oneof, the first the dice pick; its quantifier says which oneof.
                guard !oneofsSet.contains(field.quantifier_offset), below(3) == 0 else { continue }
                oneofsSet.insert(field.quantifier_offset)
            } else if below(3) == 0 {
                continue
            }
            if field.type == PROTOBUF_C_TYPE_MESSAGE && depth >= 3 { continue }
            let count = field.label == PROTOBUF_C_LABEL_REPEATED ? below(4) : 1
            let packed = field.flags & UInt32(PROTOBUF_C_FIELD_FLAG_PACKED.rawValue) != 0 && below(2) == 0
            var run: [UInt8] = []
            for _ in 0..<count {
                let (wireType, value) = self.value(field, depth: depth)
                if packed && wireType != 2 {
                    run += value
                } else {
                    out += varint(UInt64(field.id) << 3 | UInt64(wireType)) + value
                }
            }
            if !run.isEmpty { out += varint(UInt64(field.id) << 3 | 2) + varint(UInt64(run.count)) + run }
        }
        return out
    }

    /// One value of `field`: its wire type and encoding (length-prefixed for type 2).
    mutating func value(_ field: ProtobufCFieldDescriptor, depth: Int) -> (UInt8, [UInt8]) {
        switch field.type {
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_UINT64:
            return (0, varint(wide([0, 1, UInt64.max, UInt64(bitPattern: Int64.min), UInt64(Int64.max)])))
        case PROTOBUF_C_TYPE_INT32:
            return (0, varint(UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: wide([0, 1, UInt64.max, 1 << 31]))))))
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_SINT32:
            return (0, varint(UInt64(UInt32(truncatingIfNeeded: wide([0, 1, UInt64(UInt32.max)])))))
        case PROTOBUF_C_TYPE_SINT64: return (0, varint(wide([0, 1, 2, UInt64.max])))
        case PROTOBUF_C_TYPE_BOOL: return (0, [UInt8(below(2))])
        case PROTOBUF_C_TYPE_ENUM:
            let values = field.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self).pointee
            // Mostly a declared value; sometimes one this schema does not know (proto3 enums are open).
            let number = below(5) == 0 ? 77 : values.values[below(Int(values.n_values))].value
            return (0, varint(UInt64(bitPattern: Int64(number))))
        case PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FLOAT:
            return (5, withUnsafeBytes(of: UInt32(truncatingIfNeeded: next()).littleEndian, Array.init))
        case PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_DOUBLE:
            return (1, withUnsafeBytes(of: next().littleEndian, Array.init))
        case PROTOBUF_C_TYPE_STRING: return (2, lengthPrefixed(Array(string().utf8)))
        case PROTOBUF_C_TYPE_BYTES:
            return (2, lengthPrefixed((0..<below(20)).map { _ in UInt8(truncatingIfNeeded: next()) }))
        default:
            let nested = field.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            return (2, lengthPrefixed(message(nested, depth: depth + 1)))
        }
    }

    /// Text JSON must escape or carry as UTF-8: quotes, backslashes, controls, U+2028, astral
    /// characters (no U+0000, which protobuf-c's C strings cannot hold).
    mutating func string() -> String {
        let pieces = ["a", "key:42", "é", "東京", "😀", "\"", "\\", "\u{1}", "\n", "\u{7F}", "\u{2028}", " ", "/"]
        return (0..<below(6)).map { _ in pieces[below(pieces.count)] }.joined()
    }

    /// One of the extremes half the time, else a random number of random width.
    mutating func wide(_ extremes: [UInt64]) -> UInt64 {
        below(2) == 0 ? extremes[below(extremes.count)] : next() >> below(64)
    }
}

private func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    while value >= 0x80 {
        out.append(UInt8(value & 0x7F) | 0x80)
        value >>= 7
    }
    out.append(UInt8(value))
    return out
}

private func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] { varint(UInt64(bytes.count)) + bytes }
