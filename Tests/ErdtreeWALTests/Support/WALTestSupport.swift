import ErdtreeSync
import Glibc
import Logging
import Testing

@testable import ErdtreeWAL

/// A fresh directory under /tmp. Tests `defer { temp.remove() }`: that also keeps the object alive
/// to the end of the test (ARC may end a local's lifetime at its last use, so deinit cannot do it).
final class TemporaryDirectory: Sendable {
    let path: String

    init() {
        var template = Array("/tmp/erdtree-wal-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { $0.baseAddress.flatMap { mkdtemp($0) } }
        precondition(created != nil, "mkdtemp failed: errno \(errno)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
        _ = system("rm -rf '\(path)'")
    }

    /// The WAL directory inside it (not created: the log creates it).
    var wal: String { path + "/data/wal" }
}

let quietLogger = Logger(label: "erdtree.wal.test") { _ in SwiftLogNoOpLogHandler() }

/// A log opened on `directory`, the records recovery replayed, and its report.
struct OpenedLog {
    let log: WriteAheadLog
    let replayed: [WALRecord]
    /// Where each replayed record sits, parallel to `replayed`.
    let locations: [WALLocation]
    let report: WALRecoveryReport
}

func openLog(
    _ directory: String,
    syncPolicy: WALSyncPolicy = .interval(.seconds(1)),
    maxFileSizeBytes: Int64 = 1 << 20
) throws -> OpenedLog {
    var replayed: [WALRecord] = []
    var locations: [WALLocation] = []
    let configuration = WALConfiguration(
        directory: directory,
        syncPolicy: syncPolicy,
        maxFileSizeBytes: maxFileSizeBytes
    )
    let (log, report) = try WriteAheadLog.open(configuration, logger: quietLogger) {
        replayed.append($0)
        locations.append($1)
    }
    return OpenedLog(log: log, replayed: replayed, locations: locations, report: report)
}

/// A closed log in `temp.wal` holding records 0..<count (LSNs 1...count, see `testRecord`).
func writeClosedLog(
    _ temp: TemporaryDirectory,
    count: Int,
    valueBytes: Int = 20,
    maxFileSizeBytes: Int64 = 1 << 20
) async throws {
    let opened = try openLog(temp.wal, maxFileSizeBytes: maxFileSizeBytes)
    try await opened.log.appendTestRecords(0..<count, valueBytes: valueBytes)
    opened.log.close()
}

/// The record a test appends as its `index`-th write: key "key-<index>", a value of `valueBytes`.
func testRecord(_ index: Int, valueBytes: Int = 20) -> (key: [UInt8], value: [UInt8]) {
    let key = Array("key-\(index)".utf8)
    let value = (0..<valueBytes).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }
    return (key, value)
}

extension WriteAheadLog {
    /// Appends and waits for the completion.
    func appendAndWait(
        op: WALOp = .set,
        key: [UInt8],
        value: [UInt8],
        expiresAtMs: Int64 = 0,
        timestampMs: Int64 = 1_700_000_000_000
    ) async -> Result<UInt64, WALError> {
        await appendAndLocate(op: op, key: key, value: value, expiresAtMs: expiresAtMs, timestampMs: timestampMs)
            .map(\.lsn)
    }

    /// Appends and waits for the completion, which says where the record went.
    func appendAndLocate(
        op: WALOp = .set,
        key: [UInt8],
        value: [UInt8],
        expiresAtMs: Int64 = 0,
        timestampMs: Int64 = 1_700_000_000_000
    ) async -> Result<WALAppended, WALError> {
        await withCheckedContinuation { continuation in
            append(op: op, key: key, value: value, expiresAtMs: expiresAtMs, timestampMs: timestampMs) {
                continuation.resume(returning: $0)
            }
        }
    }

    /// Appends records `range` (see `testRecord`) one after another and returns their LSNs.
    @discardableResult
    func appendTestRecords(_ range: Range<Int>, valueBytes: Int = 20) async throws -> [UInt64] {
        var lsns: [UInt64] = []
        for index in range {
            let (key, value) = testRecord(index, valueBytes: valueBytes)
            lsns.append(try await appendAndWait(key: key, value: value).get())
        }
        return lsns
    }
}

// MARK: Files (LevelDB's log_test helpers, on real segment files)

func segmentNames(_ directory: String) -> [String] {
    guard let handle = opendir(directory) else { return [] }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name.hasSuffix(".log") { names.append(name) }
    }
    return names.sorted()
}

func segmentPaths(_ directory: String) -> [String] {
    segmentNames(directory).map { directory + "/" + $0 }
}

func fileSize(_ path: String) -> Int {
    var info = stat()
    precondition(stat(path, &info) == 0, "stat \(path): errno \(errno)")
    return Int(info.st_size)
}

func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    precondition(fd >= 0, "open \(path): errno \(errno)")
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: fileSize(path))
    let count = bytes.count
    let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, 0) }
    precondition(read == count, "short read of \(path)")
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path): errno \(errno)")
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    precondition(written == bytes.count, "short write to \(path)")
}

func setByte(_ path: String, at offset: Int, to value: UInt8) {
    var bytes = readFile(path)
    bytes[offset] = value
    writeFile(path, bytes)
}

func incrementByte(_ path: String, at offset: Int, by delta: UInt8 = 1) {
    var bytes = readFile(path)
    bytes[offset] &+= delta
    writeFile(path, bytes)
}

/// Cuts the file down to `length` bytes.
func shrinkSize(_ path: String, to length: Int) {
    precondition(truncate(path, off_t(length)) == 0, "truncate \(path): errno \(errno)")
}

func setUInt32(_ path: String, at offset: Int, to value: UInt32) {
    var bytes = readFile(path)
    for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    writeFile(path, bytes)
}

/// Recomputes the CRC of the record at `offset`, so that a damaged length or field is caught by
/// its own check rather than by the checksum (LevelDB's FixChecksum). The CRC covers the length
/// field and the payload.
func fixChecksum(_ path: String, recordAt offset: Int, payloadLength: Int) {
    let bytes = readFile(path)
    let covered = Array(bytes[(offset + 4)..<(offset + 8 + payloadLength)])
    setUInt32(path, at: offset, to: CRC32C.checksum(covered))
}

/// Offsets of every record in a segment file, found by walking the length fields.
func recordOffsets(_ path: String) -> [Int] {
    let bytes = readFile(path)
    var offsets: [Int] = []
    var offset = RecordFormat.headerSize
    while offset + RecordFormat.recordHeaderSize <= bytes.count {
        let length = (0..<4).reduce(0) { $0 | Int(bytes[offset + 4 + $1]) << (8 * $1) }
        guard offset + 8 + length <= bytes.count else { break }
        offsets.append(offset)
        offset += 8 + length
    }
    return offsets
}

/// Collects results from completions that run on the writer thread.
final class CompletionLog: Sendable {
    private let results = Locked<[Result<UInt64, WALError>]>([])

    func record(_ result: Result<UInt64, WALError>) {
        results.withLock { $0.append(result) }
    }

    var all: [Result<UInt64, WALError>] { results.withLock { $0 } }
}

/// Runs `body(index)` on `count` new threads at once and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        let box = Unmanaged.passRetained(Body { body(index) }).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            nil,
            {
                if let argument = $0 { Unmanaged<Body>.fromOpaque(argument).takeRetainedValue().run() }
                return nil
            },
            box
        )
        precondition(result == 0, "pthread_create: \(result)")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}
