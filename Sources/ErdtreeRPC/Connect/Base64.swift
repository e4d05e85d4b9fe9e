/// RFC 4648 base64: standard alphabet with padding out; standard or URL-safe, padded or not, in.
///
/// `package`: Connect (binary GET messages), the h2c upgrade (`HTTP2-Settings`) and
/// ErdtreeProtobuf's JSON mapping (bytes fields) all read or write it.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    package static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        bytes.withUnsafeBufferPointer { append($0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Every 12-bit value's two characters, the first in the low byte: a triple of input bytes
    /// takes two lookups (8 KiB, built once).
    private static let pairs: [UInt16] = (0..<4096).map { UInt16(alphabet[$0 >> 6]) | UInt16(alphabet[$0 & 63]) << 8 }

    /// Appends the base64 of `bytes` to `out` (never characters JSON must escape).
    package static func append(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        guard let source = bytes.baseAddress else { return }
        let length = (bytes.count + 2) / 3 * 4
        // Written into scratch memory through unchecked pointers, four characters per store,
        // then appended in one copy.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { scratch in
            pairs.withUnsafeBufferPointer { pairs in
                guard let pairs = pairs.baseAddress, let base = scratch.baseAddress else { return }
                let target = UnsafeMutableRawPointer(base)
                @inline(__always) func quad(_ triple: UInt32) -> UInt32 {
                    UInt32(pairs[Int(triple >> 12)]) | UInt32(pairs[Int(triple & 0xFFF)]) << 16
                }
                let whole = bytes.count / 3
                for group in 0..<whole {
                    let at = source + group &* 3
                    let triple = UInt32(at[0]) << 16 | UInt32(at[1]) << 8 | UInt32(at[2])
                    target.storeBytes(of: quad(triple).littleEndian, toByteOffset: group &* 4, as: UInt32.self)
                }
                // The last one or two bytes, padded with '='.
                let rest = bytes.count - whole * 3
                guard rest > 0 else { return }
                let at = source + whole * 3
                let triple = UInt32(at[0]) << 16 | (rest == 2 ? UInt32(at[1]) << 8 : 0)
                var last = quad(triple).littleEndian
                withUnsafeBytes(of: &last) { characters in
                    for index in 0..<4 {
                        base[whole * 4 + index] = index <= rest ? characters[index] : UInt8(ascii: "=")
                    }
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(scratch))
        }
    }

    /// nil when `text` is not base64 in either alphabet.
    package static func decode(_ text: String) -> [UInt8]? {
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
