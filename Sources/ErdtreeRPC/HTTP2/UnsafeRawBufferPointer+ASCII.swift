#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension UnsafeRawBufferPointer {
    /// Byte-wise equality with an ASCII literal. Header names and values are compared on
    /// every request; the generic `elementsEqual` over a `String.UTF8View` costs a few
    /// hundred instructions each time, `memcmp` a handful.
    @inline(__always)
    func equals(_ literal: StaticString) -> Bool {
        count == literal.utf8CodeUnitCount && hasPrefix(literal)
    }

    @inline(__always)
    func hasPrefix(_ literal: StaticString) -> Bool {
        let length = literal.utf8CodeUnitCount
        guard count >= length else { return false }
        guard length > 0, let base = baseAddress else { return true }
        return memcmp(base, literal.utf8Start, length) == 0
    }

    func equals(_ bytes: [UInt8]) -> Bool {
        guard count == bytes.count else { return false }
        guard let base = baseAddress else { return true }
        return bytes.withUnsafeBytes { other in
            guard let otherBase = other.baseAddress else { return true }
            return memcmp(base, otherBase, count) == 0
        }
    }
}
