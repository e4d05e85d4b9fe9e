internal import CProtobufC

/// Owns the C memory of one nested message while it is packed; `free()` releases it all.
///
/// protobuf-c messages with nested messages, repeated fields and strings are graphs of C
/// pointers; building one in an arena and freeing it in one go after `pack` keeps the
/// ownership in one place.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    func make<T>(_ type: T.Type, initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        blocks.append(UnsafeMutableRawPointer(pointer))
        initialize(pointer)
        return pointer
    }

    func array<T>(of type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        blocks.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8> {
        let pointer = array(of: UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: bytes.count) }
        }
        return pointer
    }

    func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        cString(Array(string.utf8))
    }

    /// A NUL-terminated copy of `utf8` (which holds no NUL: keys are checked on the way in).
    func cString(_ utf8: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let pointer = array(of: CChar.self, count: utf8.count + 1)
        for (i, byte) in utf8.enumerated() { pointer[i] = CChar(bitPattern: byte) }
        pointer[utf8.count] = 0
        return pointer
    }

    func free() {
        for block in blocks { block.deallocate() }
        blocks.removeAll()
    }
}
