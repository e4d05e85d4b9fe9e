import ArgumentParser
import ErdtreeWAL
import Glibc

/// `erdtree wal dump` and `erdtree wal verify`: a log on disk, read with no node (etcd's
/// etcd-dump-logs, Redis's redis-check-aof). The reading and the checks are `WALInspector`'s.
struct WALCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal",
        abstract: "Read a write-ahead log on disk: print its records, or check it.",
        discussion: """
            PATH is a WAL directory (a node's wal.directory: every <first-lsn>.log segment in it, in LSN order, \
            as one log; the divergent/ subdirectory only when PATH is that directory, each file on its own) or \
            one segment file. Both commands only read, so a node may be running on the directory.
            The line formats are in docs/wal-format.md, "Inspecting a log".
            """,
        subcommands: [WALDumpCommand.self, WALVerifyCommand.self]
    )
}

struct WALDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print every record of a log, one line each.",
        discussion: """
            Prints a line per file, then one per record, every field name=value:

              # file="<path>" first_lsn= compacted= replication_id= bytes=
              lsn= op=set|delete key="<key>" value_bytes= expires_at_ms=
                   timestamp_ms= offset=
              lsn= op=epoch epoch= timestamp_ms= offset=

            A key that is not printable UTF-8 prints as hex:<digits>; in a quoted one, " and \\ are \
            escaped with \\. expires_at_ms is absolute Unix ms (0: never); offset is the record's byte offset \
            in its file. Values are not printed.
            A problem (as `erdtree wal verify` reports it) goes to standard error and the dump goes on where \
            it can (the next record, or the next file after a damaged one). Exit status: 0, or 1 if there \
            was any problem.
            """
    )

    @Argument(help: "A WAL directory or one segment file.") var path: String

    func run() throws {
        let summary = WALInspector(path: path).scan { event in
            switch event {
            case .segment(let header):
                print(WALInspector.Text.line(for: header))
            case .record(let record, let offset, _):
                print(WALInspector.Text.line(for: record, offset: offset))
            case .problem(let problem):
                printToStandardError("wal dump: \(problem)")
            }
            return true
        }
        if summary.problems > 0 { throw ExitCode(1) }
    }
}

struct WALVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a log's headers, record checksums and LSN order; exit 1 at the first problem.",
        discussion: """
            Checks what recovery checks (docs/wal-format.md, "Recovery"): every header and record CRC, LSNs \
            consecutive within and across written segments and increasing in compacted ones, one \
            replication id. It never repairs: a torn write at the end of the newest segment, which the next \
            start would truncate, is reported like any other problem.
            On success prints one line and exits 0:

              ok files= records= first_lsn= last_lsn= epochs=<epoch>@<lsn>,...|none
                 compacted_files= compaction_pending=true|false

            On the first problem prints one line to standard error and exits 1:

              wal verify: <file>: offset <n> (LSN <n>, after LSN <n>): <what is wrong>
            """
    )

    @Argument(help: "A WAL directory or one segment file.") var path: String

    func run() throws {
        switch WALInspector(path: path).verify() {
        case .success(let summary):
            print(WALInspector.Text.line(for: summary))
            if summary.compactionPending {
                printToStandardError(
                    "wal verify: note: compaction.commit is present: a compaction is running, or was interrupted "
                        + "and the next start finishes it")
            }
        case .failure(let problem):
            printToStandardError("wal verify: \(problem)")
            throw ExitCode(1)
        }
    }
}

/// Writes `line` to standard error after what `print` has buffered, so the two keep their order.
private func printToStandardError(_ line: String) {
    fflush(nil)
    var text = line + "\n"
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let written = write(STDERR_FILENO, bytes.baseAddress.map { $0 + done }, bytes.count - done)
            if written <= 0 {
                if written < 0, errno == EINTR { continue }
                return
            }
            done += written
        }
    }
}
