import Glibc
import Logging

/// Rewrites the oldest segments with only their live records, crash-safe at every step.
///
/// The oldest `count` sealed segments cover LSNs `[first, last]` (`last` is one before the next
/// segment's first LSN). Their live records are written, in LSN order, into new segment files
/// ("parts", header version 2, at most `maxFileSizeBytes` each) named for their first LSN (the first
/// part for `first`, so the parts tile the same range). The steps, and what a crash after each
/// leaves (rule 8 of `WALRecovery`):
///
/// 1. Each part is written as `<name>.compacting` and fsynced; then the directory. A crash leaves
///    `.compacting` files and no commit record: recovery deletes them, the old segments stand.
/// 2. The commit record `compaction.commit` (range and part names, CRC-checked) is written to a
///    temporary name, fsynced, renamed into place, and the directory fsynced: the commit point.
/// 3. The replaced segments are deleted. 4. Each part is renamed to its `.log` name.
///    5. The commit record is deleted. A crash anywhere in 3–5 leaves the commit record:
///    recovery deletes whatever `.log` files in `[first, last]` are not parts, renames what is
///    still `.compacting` (a `.log` of the same name is then an old segment, since renames start
///    only once every old segment is gone), and deletes the record.
///
/// A failpoint build can kill the process after each step (`WALFailpoints`), so tests check each
/// crash state with a real process.
enum WALCompaction {
    static let commitName = "compaction.commit"
    static let commitTemporaryName = "compaction.commit.tmp"
    static let partSuffix = ".compacting"

    /// The commit record: which LSN range the parts replace and what the parts are called.
    struct CommitRecord: Equatable {
        var firstLSN: UInt64
        var lastLSN: UInt64
        var parts: [String]

        private static let magicLine = "erdtree-compaction 1"

        func encoded() -> [UInt8] {
            var text = "\(Self.magicLine)\nfirst \(firstLSN)\nlast \(lastLSN)\n"
            for part in parts { text += "part \(part)\n" }
            let body = Array(text.utf8)
            let crc = body.withUnsafeBytes { CRC32C.checksum($0) }
            return body + Array("crc32c \(RecordFormat.hex(crc))\n".utf8)
        }

        static func decode(_ bytes: [UInt8]) -> Result<CommitRecord, RecordFormat.HeaderProblem> {
            guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.init("not UTF-8")) }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard lines.last == "" else { return .failure(.init("it does not end with a newline (cut short?)")) }
            lines.removeLast()
            guard let crcLine = lines.popLast(), crcLine.hasPrefix("crc32c ") else {
                return .failure(.init("the crc32c line is missing"))
            }
            let body = Array(lines.map { $0 + "\n" }.joined().utf8)
            let crc = body.withUnsafeBytes { CRC32C.checksum($0) }
            guard crcLine == "crc32c \(RecordFormat.hex(crc))" else {
                return .failure(.init("checksum mismatch (\(crcLine), computed \(RecordFormat.hex(crc)))"))
            }
            guard lines.count >= 3, lines[0] == magicLine,
                lines[1].hasPrefix("first "), let first = UInt64(lines[1].dropFirst(6)),
                lines[2].hasPrefix("last "), let last = UInt64(lines[2].dropFirst(5)), first <= last
            else { return .failure(.init("the first lines are not the magic, first LSN and last LSN")) }
            var parts: [String] = []
            for line in lines[3...] {
                guard line.hasPrefix("part "), RecordFormat.firstLSN(segmentName: String(line.dropFirst(5))) != nil
                else { return .failure(.init("\"\(line)\" is not a part line")) }
                parts.append(String(line.dropFirst(5)))
            }
            return .success(CommitRecord(firstLSN: first, lastLSN: last, parts: parts))
        }
    }

    // MARK: Recovery (rule 8)

    /// Finishes a committed compaction or undoes an uncommitted one; see the type's comment.
    static func recover(directory: String, logger: Logger) throws(WALError) {
        let names = try System.listDirectory(directory)
        let commitPath = System.join(directory, commitName)
        guard names.contains(commitName) else {
            let leftovers = names.filter { $0.hasSuffix(partSuffix) || $0 == commitTemporaryName }
            guard !leftovers.isEmpty else { return }
            for name in leftovers { try System.unlink(System.join(directory, name)) }
            try System.fsyncDirectory(directory)
            logger.warning(
                """
                WAL compaction interrupted before it committed; its partial output was deleted and the \
                segments it was rewriting are kept
                """,
                metadata: ["directory": "\(directory)", "deleted": "\(leftovers.sorted())"])
            return
        }
        let record = try readCommitRecord(commitPath)
        let parts = Set(record.parts)
        var deleted: [String] = []
        for name in names {
            guard let first = RecordFormat.firstLSN(segmentName: name), first >= record.firstLSN,
                first <= record.lastLSN, !parts.contains(name)
            else { continue }
            try System.unlink(System.join(directory, name))
            deleted.append(name)
        }
        var renamed: [String] = []
        for part in record.parts where names.contains(part + partSuffix) {
            let path = System.join(directory, part)
            if names.contains(part) { try System.unlink(path) }
            try System.rename(path + partSuffix, to: path)
            renamed.append(part)
        }
        try System.fsyncDirectory(directory)
        try System.unlink(commitPath)
        try System.unlink(System.join(directory, commitTemporaryName), ignoringMissing: true)
        try System.fsyncDirectory(directory)
        logger.warning(
            "WAL compaction interrupted after it committed; finished it",
            metadata: [
                "directory": "\(directory)", "first_lsn": "\(record.firstLSN)", "last_lsn": "\(record.lastLSN)",
                "deleted": "\(deleted.sorted())", "renamed": "\(renamed)",
            ])
    }

    private static func readCommitRecord(_ path: String) throws(WALError) -> CommitRecord {
        let fd = try System.open(path, flags: O_RDONLY)
        defer { try? System.close(fd, path: path) }
        let size = try System.fileSize(fd, path: path)
        guard size <= 1 << 20 else { throw .badCompactionRecord(path: path, reason: "it is \(size) bytes") }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let read = try System.pread(fd, into: &bytes, count: bytes.count, offset: 0, path: path)
        switch CommitRecord.decode(Array(bytes[0..<read])) {
        case .success(let record): return record
        case .failure(let problem): throw .badCompactionRecord(path: path, reason: problem.reason)
        }
    }
}
