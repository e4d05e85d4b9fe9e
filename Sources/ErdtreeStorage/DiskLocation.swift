/// Where the record holding a key's value sits on disk: a segment number, an offset, a length.
///
/// The engine does not read disks; it keeps the location so that the node can read an evicted
/// value with one positioned read, and so that it can tell how many bytes of each segment are
/// still live (`KeyValueStore.liveBytesBySegment()`), which is what compaction weighs.
/// `segment == 0` means no location (a store used without a log).
public struct DiskLocation: Sendable, Equatable, Hashable {
    public var segment: UInt32
    public var offset: UInt32
    public var length: UInt32

    public init(segment: UInt32, offset: UInt32, length: UInt32) {
        self.segment = segment
        self.offset = offset
        self.length = length
    }

    public static let none = DiskLocation(segment: 0, offset: 0, length: 0)
}
