import ErdtreeStorage
import ErdtreeWAL

extension DiskLocation {
    /// The store's copy of a WAL location (the store does not depend on the WAL).
    init(_ location: WALLocation) {
        self.init(segment: location.segment, offset: location.offset, length: location.length)
    }
}

extension WALLocation {
    /// The WAL location a store entry points at, to read its record back.
    init(_ location: DiskLocation) {
        self.init(segment: location.segment, offset: location.offset, length: location.length)
    }
}
