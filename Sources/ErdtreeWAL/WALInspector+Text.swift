extension WALInspector {
    /// The lines `erdtree wal dump` and `erdtree wal verify` print (docs/wal-format.md, "Inspecting
    /// a log"). Scripts and tests parse them, so they only ever gain fields at the end.
    ///
    /// Every field is `name=value`, separated by one space; a value never holds a space unless it
    /// is a double-quoted string, inside which only `"` and `\` are escaped (with `\`), so that
    /// Python's `shlex.split` reads a line back.
    public enum Text {
        /// `# file="<path>" first_lsn=<n> compacted=<true|false> replication_id=<32 hex digits> bytes=<n>`
        public static func line(for header: SegmentHeader) -> String {
            "# file=\(quoted(Array(header.path.utf8))) first_lsn=\(header.firstLSN) compacted=\(header.compacted) "
                + "replication_id=\(header.replicationID) bytes=\(header.bytes)"
        }

        /// One record:
        ///
        ///     lsn=<n> op=set key=<key> value_bytes=<n> expires_at_ms=<n> timestamp_ms=<n> offset=<n>
        ///     lsn=<n> op=delete key=<key> value_bytes=0 expires_at_ms=<n> timestamp_ms=<n> offset=<n>
        ///     lsn=<n> op=epoch epoch=<n> timestamp_ms=<n> offset=<n>
        ///
        /// `key` as `quoted(_:)` writes it; `expires_at_ms` is absolute Unix ms, 0 for never;
        /// `offset` is the record's byte offset in its file.
        public static func line(for record: WALRecord, offset: Int64) -> String {
            let tail = "timestamp_ms=\(record.timestampMs) offset=\(offset)"
            if let epoch = record.markedEpoch {
                return "lsn=\(record.lsn) op=epoch epoch=\(epoch) " + tail
            }
            return "lsn=\(record.lsn) op=\(name(of: record.op)) key=\(quoted(record.key)) "
                + "value_bytes=\(record.value.count) expires_at_ms=\(record.expiresAtMs) " + tail
        }

        /// What a log that passed `verify()` holds:
        ///
        ///     ok files=<n> records=<n> first_lsn=<n> last_lsn=<n> epochs=<epoch>@<lsn>,… compacted_files=<n> compaction_pending=<true|false>
        ///
        /// `first_lsn` and `last_lsn` are 0 when there is no record; `epochs` lists the epoch
        /// markers read (the epoch and the LSN it starts at), `none` when there is none.
        public static func line(for summary: Summary) -> String {
            let epochs =
                summary.epochStarts.isEmpty
                ? "none" : summary.epochStarts.map { "\($0.epoch)@\($0.lsn)" }.joined(separator: ",")
            return "ok files=\(summary.files) records=\(summary.records) first_lsn=\(summary.firstLSN) "
                + "last_lsn=\(summary.lastLSN) epochs=\(epochs) compacted_files=\(summary.compactedFiles) "
                + "compaction_pending=\(summary.compactionPending)"
        }

        /// A key or path as a field value: `"<text>"` when the bytes are valid UTF-8 with nothing
        /// unprintable in them (no control, format or separator character), else `hex:<digits>`.
        public static func quoted(_ bytes: [UInt8]) -> String {
            guard let text = String(validating: bytes, as: UTF8.self), text.unicodeScalars.allSatisfy(isPrintable)
            else {
                return "hex:" + hexString(bytes)
            }
            var out = "\""
            for scalar in text.unicodeScalars {
                if scalar == "\"" || scalar == "\\" { out.unicodeScalars.append("\\") }
                out.unicodeScalars.append(scalar)
            }
            return out + "\""
        }

        private static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                return false
            default:
                return true
            }
        }

        private static func name(of op: WALOp) -> String {
            switch op {
            case .set: return "set"
            case .delete: return "delete"
            case .epoch: return "epoch"
            }
        }
    }
}
