#if canImport(Glibc)
    import Glibc
#endif

/// A directory for harnesses that fuzz code working on files (the WAL, a node's log): one per
/// process, on tmpfs when there is one, since fsync there costs nothing; emptied before each input
/// without a `rm -rf` child process (fork is slow from an ASan process).
public struct ScratchDirectory: Sendable {
    public let path: String

    public init(prefix: String) {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
            fatalError("mkdtemp: errno \(errno)")
        }
        path = String(cString: made)
    }

    /// `path/name`, created empty (whatever an earlier input left there is removed).
    public func fresh(_ name: String) -> String {
        let child = path + "/" + name
        Self.remove(child)
        mkdir(child, 0o755)
        return child
    }

    /// Removes `path` and everything under it; nothing there is fine.
    public static func remove(_ path: String) {
        if let handle = opendir(path) {
            while let entry = readdir(handle) {
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                remove(path + "/" + name)
            }
            closedir(handle)
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
