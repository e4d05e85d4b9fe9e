import CProtobufC

/// Unpacked protobuf-c message → JSON text.
extension ProtoJSON {
    static func writeMessage(_ message: UnsafeRawPointer, _ descriptor: Descriptor, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        let prefixes = names(of: descriptor).memberPrefix
        for (index, field) in fields(of: descriptor).enumerated() {
            let value = message + Int(field.offset)
            let quantifier = message + Int(field.quantifier_offset)
            let count: Int
            switch field.label {
            case PROTOBUF_C_LABEL_REPEATED:
                count = quantifier.load(as: Int.self)
                guard count > 0 else { continue }
            case _ where isOneof(field):
                guard quantifier.load(as: UInt32.self) == field.id else { continue }
                count = 1
            case PROTOBUF_C_LABEL_OPTIONAL
            where field.type != PROTOBUF_C_TYPE_MESSAGE
                && field.type != PROTOBUF_C_TYPE_STRING:
                // proto3 `optional`: presence is the has_ flag, so an explicit zero is written.
                guard quantifier.load(as: Int32.self) != 0 else { continue }
                count = 1
            default:
                guard !isDefault(value, field) else { continue }
                count = 1
            }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: prefixes[index])
            if field.label == PROTOBUF_C_LABEL_REPEATED {
                let elements = value.load(as: UnsafeRawPointer.self)
                let stride = elementSize(field.type)
                out.append(UInt8(ascii: "["))
                for index in 0..<count {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    writeValue(elements + index * stride, field, to: &out)
                }
                out.append(UInt8(ascii: "]"))
            } else {
                writeValue(value, field, to: &out)
            }
        }
        out.append(UInt8(ascii: "}"))
    }

    /// Whether a singular field without presence holds its default (and is left out).
    private static func isDefault(_ value: UnsafeRawPointer, _ field: ProtobufCFieldDescriptor) -> Bool {
        switch field.type {
        case PROTOBUF_C_TYPE_STRING:
            guard let text = value.load(as: UnsafePointer<CChar>?.self) else { return true }
            return text.pointee == 0
        case PROTOBUF_C_TYPE_BYTES: return value.load(as: ProtobufCBinaryData.self).len == 0
        case PROTOBUF_C_TYPE_MESSAGE: return value.load(as: UnsafeRawPointer?.self) == nil
        case PROTOBUF_C_TYPE_DOUBLE: return value.load(as: UInt64.self) == 0
        default:
            return elementSize(field.type) == 8 ? value.load(as: UInt64.self) == 0 : value.load(as: UInt32.self) == 0
        }
    }

    private static func writeValue(_ value: UnsafeRawPointer, _ field: ProtobufCFieldDescriptor, to out: inout [UInt8])
    {
        switch field.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
            appendDecimal(Int64(value.load(as: Int32.self)), to: &out)
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            appendDecimal(UInt64(value.load(as: UInt32.self)), negative: false, to: &out)
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            out.append(UInt8(ascii: "\""))
            appendDecimal(value.load(as: Int64.self), to: &out)
            out.append(UInt8(ascii: "\""))
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            out.append(UInt8(ascii: "\""))
            appendDecimal(value.load(as: UInt64.self), negative: false, to: &out)
            out.append(UInt8(ascii: "\""))
        case PROTOBUF_C_TYPE_FLOAT: writeFloating(Double(value.load(as: Float.self)), to: &out)
        case PROTOBUF_C_TYPE_DOUBLE: writeFloating(value.load(as: Double.self), to: &out)
        case PROTOBUF_C_TYPE_BOOL:
            out.append(contentsOf: Array((value.load(as: Int32.self) != 0 ? "true" : "false").utf8))
        case PROTOBUF_C_TYPE_ENUM:
            let number = value.load(as: Int32.self)
            if let name = enumName(number, field) {
                JSONWriter.appendString(name, to: &out)
            } else {
                out.append(contentsOf: Array(String(number).utf8))
            }
        case PROTOBUF_C_TYPE_STRING:
            let text = value.load(as: UnsafePointer<CChar>?.self).map { String(cString: $0) } ?? ""
            JSONWriter.appendString(text, to: &out)
        case PROTOBUF_C_TYPE_BYTES:
            let data = value.load(as: ProtobufCBinaryData.self)
            out.append(UInt8(ascii: "\""))
            Base64.append(UnsafeBufferPointer(start: data.data, count: data.data == nil ? 0 : data.len), to: &out)
            out.append(UInt8(ascii: "\""))
        case PROTOBUF_C_TYPE_MESSAGE:
            let nested = field.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            if let message = value.load(as: UnsafeRawPointer?.self) {
                writeMessage(message, nested, to: &out)
            } else {
                out.append(contentsOf: Array("{}".utf8))
            }
        default:
            out.append(contentsOf: Array("null".utf8))
        }
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

/// RFC 4648 base64: standard alphabet with padding out; standard or URL-safe, padded or not, in.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        bytes.withUnsafeBufferPointer { append($0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the base64 of `bytes` to `out` (never characters JSON must escape).
    static func append(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        let start = out.count
        let length = (bytes.count + 2) / 3 * 4
        out.append(contentsOf: repeatElement(0, count: length))
        alphabet.withUnsafeBufferPointer { alphabet in
            out.withUnsafeMutableBufferPointer { whole in
                var at = start
                var index = 0
                while index < bytes.count {
                    let remaining = bytes.count - index
                    let b0 = UInt32(bytes[index])
                    let b1 = remaining > 1 ? UInt32(bytes[index + 1]) : 0
                    let b2 = remaining > 2 ? UInt32(bytes[index + 2]) : 0
                    let triple = b0 << 16 | b1 << 8 | b2
                    whole[at] = alphabet[Int(triple >> 18 & 63)]
                    whole[at + 1] = alphabet[Int(triple >> 12 & 63)]
                    whole[at + 2] = remaining > 1 ? alphabet[Int(triple >> 6 & 63)] : UInt8(ascii: "=")
                    whole[at + 3] = remaining > 2 ? alphabet[Int(triple & 63)] : UInt8(ascii: "=")
                    at += 4
                    index += 3
                }
            }
        }
    }

    /// nil when `text` is not base64 in either alphabet.
    static func decode(_ text: String) -> [UInt8]? {
        var sextets: [UInt8] = []
        var padding = 0
        for byte in text.utf8 {
            let value: UInt8
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = byte - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = byte - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"), UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): value = 63
            case UInt8(ascii: "="):
                padding += 1
                continue
            default: return nil
            }
            guard padding == 0 else { return nil }
            sextets.append(value)
        }
        guard sextets.count % 4 != 1, padding <= 2, padding == 0 || (sextets.count + padding) % 4 == 0 else {
            return nil
        }
        var out: [UInt8] = []
        out.reserveCapacity(sextets.count * 3 / 4)
        var index = 0
        while index < sextets.count {
            let chunk = sextets[index..<min(index + 4, sextets.count)]
            var triple: UInt32 = 0
            for (position, sextet) in chunk.enumerated() { triple |= UInt32(sextet) << (18 - 6 * position) }
            out.append(UInt8(triple >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(triple >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(triple & 0xFF)) }
            index += 4
        }
        return out
    }
}
