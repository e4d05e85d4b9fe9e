import Glibc

/// The module's one door to the operating system.
///
/// Every call that can fail goes through here: interrupted calls are retried, and a failure
/// throws `WALError.io` naming the call and the path it worked on. `errno` is read right after
/// the call returns, before anything else can overwrite it.
enum System {
    static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(WALError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            let code = errno
            if code != EINTR { throw .io(call: "open", path: path, errno: code) }
        }
    }

    /// Closes `fd`. A failed close is not retried: on Linux the descriptor is gone either way.
    static func close(_ fd: Int32, path: String) throws(WALError) {
        if Glibc.close(fd) != 0 {
            let code = errno
            if code != EINTR { throw .io(call: "close", path: path, errno: code) }
        }
    }

    /// Writes all of `bytes` at the file's current offset, continuing after short writes.
    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(WALError) {
        guard let base = bytes.baseAddress else { return }
        var written = 0
        var remaining = bytes.count
        while remaining > 0 {
            let result = Glibc.write(fd, base + written, remaining)
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                throw .io(call: "write", path: path, errno: code)
            }
            written += result
            remaining -= result
        }
    }

    static func write(_ fd: Int32, _ bytes: [UInt8], path: String) throws(WALError) {
        let failure: WALError? = bytes.withUnsafeBytes { raw in
            do throws(WALError) {
                try write(fd, raw, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at the end of the file.
    static func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, offset: Int64, path: String)
        throws(WALError) -> Int
    {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let result = Glibc.pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                throw .io(call: "pread", path: path, errno: code)
            }
            if result == 0 { break }
            done += result
        }
        return done
    }

    /// Reads up to `count` bytes at `offset` into the start of `bytes`.
    static func pread(_ fd: Int32, into bytes: inout [UInt8], count: Int, offset: Int64, path: String)
        throws(WALError) -> Int
    {
        let result: Result<Int, WALError> = bytes.withUnsafeMutableBytes { raw in
            do throws(WALError) {
                let target = UnsafeMutableRawBufferPointer(rebasing: raw[0..<count])
                return .success(try pread(fd, into: target, offset: offset, path: path))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Creates (or replaces) the file at `path` holding `bytes`, fsynced and closed; on failure
    /// no partial file is left. The caller fsyncs the directory when the name must survive too.
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(WALError) {
        let fd = try open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do throws(WALError) {
            try write(fd, bytes, path: path)
            try fsync(fd, path: path)
            try close(fd, path: path)
        } catch {
            try? close(fd, path: path)
            try? unlink(path)
            throw error
        }
    }

    static func fsync(_ fd: Int32, path: String) throws(WALError) {
        while Glibc.fsync(fd) != 0 {
            let code = errno
            if code != EINTR { throw .io(call: "fsync", path: path, errno: code) }
        }
    }

    static func ftruncate(_ fd: Int32, length: Int64, path: String) throws(WALError) {
        while Glibc.ftruncate(fd, off_t(length)) != 0 {
            let code = errno
            if code != EINTR { throw .io(call: "ftruncate", path: path, errno: code) }
        }
    }

    static func fileSize(_ fd: Int32, path: String) throws(WALError) -> Int64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(call: "fstat", path: path, errno: errno) }
        return Int64(info.st_size)
    }

    static func unlink(_ path: String, ignoringMissing: Bool = false) throws(WALError) {
        guard Glibc.unlink(path) == 0 else {
            let code = errno
            if ignoringMissing && code == ENOENT { return }
            throw .io(call: "unlink", path: path, errno: code)
        }
    }

    /// Renames `path` to `target` atomically, replacing `target` if it exists.
    static func rename(_ path: String, to target: String) throws(WALError) {
        guard Glibc.rename(path, target) == 0 else { throw .io(call: "rename", path: path, errno: errno) }
    }

    /// Makes sure a directory entry change in `path` (a create, a delete) survives power loss.
    static func fsyncDirectory(_ path: String) throws(WALError) {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { _ = Glibc.close(fd) }
        try fsync(fd, path: path)
    }

    /// Creates `path` and any missing parents, fsyncing each parent whose entries changed.
    static func makeDirectories(_ path: String) throws(WALError) {
        var missing: [String] = []
        var current = path
        while !current.isEmpty, current != "/", !isDirectory(current) {
            missing.append(current)
            current = parent(of: current)
        }
        for directory in missing.reversed() {
            if mkdir(directory, 0o755) != 0 {
                let code = errno
                if code != EEXIST { throw .io(call: "mkdir", path: directory, errno: code) }
            }
            try fsyncDirectory(parent(of: directory))
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// Names of the entries in a directory, without "." and "..".
    static func listDirectory(_ path: String) throws(WALError) -> [String] {
        guard let directory = opendir(path) else { throw .io(call: "opendir", path: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    // MARK: Threads

    /// Starts a joinable thread running `body`. (Glibc's `pthread_setname_np` is not imported, so it is unnamed.)
    static func startThread(path: String, _ body: @escaping @Sendable () -> Void) throws(WALError)
        -> pthread_t
    {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            nil,
            { argument in
                guard let argument else { return nil }
                Unmanaged<ThreadBody>.fromOpaque(argument).takeRetainedValue().body()
                return nil
            },
            box
        )
        guard result == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw .io(call: "pthread_create", path: path, errno: result)
        }
        return thread
    }

    static func joinThread(_ thread: pthread_t) {
        _ = pthread_join(thread, nil)
    }

    static func detachThread(_ thread: pthread_t) {
        _ = pthread_detach(thread)
    }

    static func isCurrentThread(_ thread: pthread_t) -> Bool {
        pthread_equal(pthread_self(), thread) != 0
    }

    private final class ThreadBody {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
