/// Parses `grpc-timeout` (gRPC PROTOCOL-HTTP2: `TimeoutValue TimeoutUnit`, at most 8
/// ASCII digits, units `H M S m u n`).
enum GRPCTimeout {
    /// - Returns: the timeout in nanoseconds, or nil when the header is malformed.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard bytes.count >= 2, bytes.count <= 9 else { return nil }
        var value: Int64 = 0
        for byte in bytes.dropLast() {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int64(byte - 0x30)
        }
        let nanosPerUnit: Int64
        switch bytes[bytes.count - 1] {
        case UInt8(ascii: "H"): nanosPerUnit = 3_600_000_000_000
        case UInt8(ascii: "M"): nanosPerUnit = 60_000_000_000
        case UInt8(ascii: "S"): nanosPerUnit = 1_000_000_000
        case UInt8(ascii: "m"): nanosPerUnit = 1_000_000
        case UInt8(ascii: "u"): nanosPerUnit = 1_000
        case UInt8(ascii: "n"): nanosPerUnit = 1
        default: return nil
        }
        // 8 digits of hours still fit in Int64 nanoseconds (1e8 h ≈ 3.6e20 ns would not),
        // so clamp rather than overflow: such a deadline is "never" in practice.
        let (product, overflow) = value.multipliedReportingOverflow(by: nanosPerUnit)
        return overflow ? Int64.max : product
    }

    /// Formats a timeout for a request header, in the coarsest exact-enough unit.
    static func format(nanoseconds: Int64) -> String {
        let n = max(nanoseconds, 0)
        if n < 100_000_000 { return "\(n)n" }
        if n < 100_000_000_000 { return "\(n / 1_000)u" }
        if n < 100_000_000_000_000 { return "\(n / 1_000_000)m" }
        return "\(min(n / 1_000_000_000, 99_999_999))S"
    }

    /// A timeout for an error message: `250ms`, `40µs`.
    static func describe(nanos: Int64) -> String {
        if nanos >= 1_000_000 { return "\(nanos / 1_000_000)ms" }
        if nanos >= 1_000 { return "\(nanos / 1_000)µs" }
        return "\(nanos)ns"
    }
}
