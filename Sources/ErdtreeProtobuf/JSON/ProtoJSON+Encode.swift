internal import CProtobufC
import ErdtreeRPC

/// Binary message → JSON text, read straight off the wire bytes: no unpacked C struct in
/// between (the bytes are usually a handler's answer, just packed).
///
/// Members come out in field-number order (protobuf-c's descriptors are sorted by it). A
/// message written in that order, as protobuf-c's packer and every mainstream encoder
/// write it, is transcoded in one pass. Anything else (fields out of order, a singular
/// field or a oneof given twice) is redone field by field, each found by a scan of the
/// tags: a singular field takes its last occurrence (protobuf's rule), a repeated one all
/// of them, packed or not, a oneof the member that came last. Fields the type does not
/// declare are skipped, whatever their wire type; malformed bytes, and a declared field
/// with a wire type its type cannot have, are refused.
extension ProtoJSON {
    /// Nesting beyond this is refused rather than risking the stack.
    static let maxWireDepth = 64

    /// Writes the message in `range` of `buffer` as JSON.
    static func writeMessage(
        _ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ descriptor: Descriptor, depth: Int = 0,
        to out: inout [UInt8]
    ) throws(WireError) {
        guard depth < maxWireDepth else {
            throw WireError(offset: range.lowerBound, reason: .messagesTooDeep(limit: maxWireDepth))
        }
        let fields = fields(of: descriptor)
        let prefixes = names(of: descriptor).memberPrefix
        let message = WireReader(buffer, range: range)
        let mark = out.count
        if try writeInOrder(message, fields, prefixes, depth, &out) { return }
        out.removeLast(out.count - mark)
        var writer = MemberWriter(buffer: buffer, prefixes: prefixes, depth: depth)
        out.append(UInt8(ascii: "{"))
        for (index, field) in fields.enumerated() {
            var reader = message
            if field.label == PROTOBUF_C_LABEL_REPEATED {
                while let wire = try reader.next() {
                    if wire.number == field.id { try writer.element(wire, field, index, &out) }
                }
                writer.closeArray(&out)
                continue
            }
            var last: WireField?
            var lastInOneof: UInt32 = 0
            while let wire = try reader.next() {
                if wire.number == field.id { last = wire }
                if isOneof(field), let other = fields.first(where: { $0.id == wire.number }), isOneof(other),
                    other.quantifier_offset == field.quantifier_offset
                {
                    lastInOneof = wire.number
                }
            }
            guard let wire = last, !isOneof(field) || lastInOneof == field.id else { continue }
            try writer.singular(wire, field, index, &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The one pass for a message in field-number order; false, with part of it written,
    /// when it is not in that order.
    private static func writeInOrder(
        _ message: WireReader, _ fields: UnsafeBufferPointer<ProtobufCFieldDescriptor>,
        _ prefixes: [[UInt8]], _ depth: Int, _ out: inout [UInt8]
    ) throws(WireError) -> Bool {
        var writer = MemberWriter(buffer: message.buffer, prefixes: prefixes, depth: depth)
        var reader = message
        var index = 0
        var lastNumber: UInt32 = 0
        var oneofSeen: UInt32 = .max  // quantifier offset of the last oneof written
        out.append(UInt8(ascii: "{"))
        while let wire = try reader.next() {
            let number = wire.number
            let known = index < fields.count && fields[index].id == number
            if number == lastNumber {
                // Only a repeated field (or one this type does not have) may come again.
                guard !known || fields[index].label == PROTOBUF_C_LABEL_REPEATED else { return false }
                if known { try writer.element(wire, fields[index], index, &out) }
                continue
            }
            guard number > lastNumber else { return false }
            lastNumber = number
            writer.closeArray(&out)
            while index < fields.count, fields[index].id < number { index += 1 }
            guard index < fields.count, fields[index].id == number else { continue }  // unknown: skipped
            let field = fields[index]
            if field.label == PROTOBUF_C_LABEL_REPEATED {
                try writer.element(wire, field, index, &out)
            } else {
                if isOneof(field) {
                    guard oneofSeen != field.quantifier_offset else { return false }
                    oneofSeen = field.quantifier_offset
                }
                try writer.singular(wire, field, index, &out)
            }
        }
        writer.closeArray(&out)
        out.append(UInt8(ascii: "}"))
        return true
    }

    /// Writes one message's members as they are found: the comma between them, a repeated
    /// field's brackets, defaults left out.
    private struct MemberWriter {
        let buffer: UnsafeRawBufferPointer
        let prefixes: [[UInt8]]
        let depth: Int
        var first = true
        var arrayOpen = false

        init(buffer: UnsafeRawBufferPointer, prefixes: [[UInt8]], depth: Int) {
            self.buffer = buffer
            self.prefixes = prefixes
            self.depth = depth
        }

        mutating func singular(
            _ wire: WireField, _ field: ProtobufCFieldDescriptor, _ index: Int, _ out: inout [UInt8]
        ) throws(WireError) {
            // Without presence (proto3 singular, not `optional`, not in a oneof), the default is
            // left out even if a producer wrote it; a message field present is written.
            let hasPresence = field.label == PROTOBUF_C_LABEL_OPTIONAL || isOneof(field)
            if !hasPresence, field.type != PROTOBUF_C_TYPE_MESSAGE, wire.value.isZero { return }
            member(index, &out)
            try writeValue(wire.value, at: wire.offset, field, depth, buffer, to: &out)
        }

        /// One occurrence of a repeated field: one element, or a packed run of them.
        mutating func element(
            _ wire: WireField, _ field: ProtobufCFieldDescriptor, _ index: Int, _ out: inout [UInt8]
        ) throws(WireError) {
            guard case .lengthDelimited(let packed) = wire.value, let elementType = packedWireType(field.type) else {
                return try nextElement(wire.value, at: wire.offset, field, index, &out)
            }
            var elements = WireReader(buffer, range: packed)
            while let element = try elements.element(elementType) {
                try nextElement(element, at: wire.offset, field, index, &out)
            }
        }

        private mutating func nextElement(
            _ value: WireField.Value, at offset: Int, _ field: ProtobufCFieldDescriptor, _ index: Int,
            _ out: inout [UInt8]
        ) throws(WireError) {
            if arrayOpen {
                out.append(UInt8(ascii: ","))
            } else {
                member(index, &out)
                out.append(UInt8(ascii: "["))
                arrayOpen = true
            }
            try writeValue(value, at: offset, field, depth, buffer, to: &out)
        }

        mutating func closeArray(_ out: inout [UInt8]) {
            if arrayOpen { out.append(UInt8(ascii: "]")) }
            arrayOpen = false
        }

        private mutating func member(_ index: Int, _ out: inout [UInt8]) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: prefixes[index])
        }
    }

    /// How the elements of a packed run of `type` are encoded; nil for the types that are
    /// never packed.
    private static func packedWireType(_ type: ProtobufCType) -> WireReader.WireType? {
        switch type {
        case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_TYPE_MESSAGE: nil
        case PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_FLOAT: .fixed32
        case PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE: .fixed64
        default: .varint
        }
    }

    /// Writes one value of `field`, found at `offset` (for the error when its wire type is wrong).
    private static func writeValue(
        _ value: WireField.Value, at offset: Int, _ field: ProtobufCFieldDescriptor, _ depth: Int,
        _ buffer: UnsafeRawBufferPointer, to out: inout [UInt8]
    ) throws(WireError) {
        switch (field.type, value) {
        case (PROTOBUF_C_TYPE_INT32, .varint(let raw)), (PROTOBUF_C_TYPE_ENUM, .varint(let raw)):
            let number = Int32(truncatingIfNeeded: raw)
            if field.type == PROTOBUF_C_TYPE_ENUM, let name = enumName(number, field) {
                JSONWriter.appendString(name, to: &out)
            } else {
                appendDecimal(Int64(number), to: &out)
            }
        case (PROTOBUF_C_TYPE_SINT32, .varint(let raw)):
            appendDecimal(Int64(Int32(truncatingIfNeeded: zigzag(raw))), to: &out)
        case (PROTOBUF_C_TYPE_SFIXED32, .fixed32(let raw)):
            appendDecimal(Int64(Int32(bitPattern: raw)), to: &out)
        case (PROTOBUF_C_TYPE_UINT32, .varint(let raw)):
            appendDecimal(UInt64(UInt32(truncatingIfNeeded: raw)), negative: false, to: &out)
        case (PROTOBUF_C_TYPE_FIXED32, .fixed32(let raw)):
            appendDecimal(UInt64(raw), negative: false, to: &out)
        case (PROTOBUF_C_TYPE_INT64, .varint(let raw)):
            appendQuoted(Int64(bitPattern: raw), to: &out)
        case (PROTOBUF_C_TYPE_SINT64, .varint(let raw)):
            appendQuoted(zigzag(raw), to: &out)
        case (PROTOBUF_C_TYPE_SFIXED64, .fixed64(let raw)):
            appendQuoted(Int64(bitPattern: raw), to: &out)
        case (PROTOBUF_C_TYPE_UINT64, .varint(let raw)), (PROTOBUF_C_TYPE_FIXED64, .fixed64(let raw)):
            out.append(UInt8(ascii: "\""))
            appendDecimal(raw, negative: false, to: &out)
            out.append(UInt8(ascii: "\""))
        case (PROTOBUF_C_TYPE_FLOAT, .fixed32(let raw)): writeFloating(Double(Float(bitPattern: raw)), to: &out)
        case (PROTOBUF_C_TYPE_DOUBLE, .fixed64(let raw)): writeFloating(Double(bitPattern: raw), to: &out)
        case (PROTOBUF_C_TYPE_BOOL, .varint(let raw)): append(raw != 0 ? "true" : "false", to: &out)
        case (PROTOBUF_C_TYPE_STRING, .lengthDelimited(let utf8)):
            JSONWriter.appendString(UnsafeRawBufferPointer(rebasing: buffer[utf8]), to: &out)
        case (PROTOBUF_C_TYPE_BYTES, .lengthDelimited(let data)):
            out.append(UInt8(ascii: "\""))
            Base64.append(UnsafeRawBufferPointer(rebasing: buffer[data]).assumingMemoryBound(to: UInt8.self), to: &out)
            out.append(UInt8(ascii: "\""))
        case (PROTOBUF_C_TYPE_MESSAGE, .lengthDelimited(let nested)):
            let descriptor = field.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            try writeMessage(buffer, nested, descriptor, depth: depth + 1, to: &out)
        default:
            throw WireError(offset: offset, reason: .wrongWireType(field: field.id))
        }
    }

    private static func zigzag(_ raw: UInt64) -> Int64 {
        Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }

    private static func appendQuoted(_ number: Int64, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        appendDecimal(number, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// A literal's bytes, without building an array for them.
    private static func append(_ literal: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    private static func appendDecimal(_ number: Int64, to out: inout [UInt8]) {
        appendDecimal(number.magnitude, negative: number < 0, to: &out)
    }

    /// Decimal digits straight into `out` (no `String` per number).
    private static func appendDecimal(_ magnitude: UInt64, negative: Bool, to out: inout [UInt8]) {
        if negative { out.append(UInt8(ascii: "-")) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            // UInt64.max has 20 digits; written from the end.
            var rest = magnitude
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    private static func writeFloating(_ number: Double, to out: inout [UInt8]) {
        if number.isNaN {
            JSONWriter.appendString("NaN", to: &out)
        } else if number.isInfinite {
            JSONWriter.appendString(number < 0 ? "-Infinity" : "Infinity", to: &out)
        } else if number == number.rounded(), abs(number) < 1e15 {
            out.append(contentsOf: Array(String(Int64(number)).utf8))
        } else {
            out.append(contentsOf: Array("\(number)".utf8))
        }
    }

    static func enumName(_ number: Int32, _ field: ProtobufCFieldDescriptor) -> String? {
        let descriptor = field.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self).pointee
        let values = UnsafeBufferPointer(start: descriptor.values, count: Int(descriptor.n_values))
        return values.first { $0.value == number }.map { String(cString: $0.name) }
    }
}
