import Testing

@testable import ErdtreeWAL

/// The lines `erdtree wal dump` and `wal verify` print, as docs/wal-format.md ("Inspecting a
/// log") states them: scripts parse these, so every field is pinned here.
@Suite struct WALInspectorTextTests {
    private typealias Text = WALInspector.Text

    @Test func setAndDeleteLinesNameEveryField() {
        let set = WALRecord(
            lsn: 12, timestampMs: 1_700_000_000_000, op: .set, expiresAtMs: 1_700_000_030_000,
            key: Array("user:1".utf8), value: Array("hello".utf8))
        #expect(
            Text.line(for: set, offset: 40)
                == "lsn=12 op=set key=\"user:1\" value_bytes=5 expires_at_ms=1700000030000 "
                + "timestamp_ms=1700000000000 offset=40")
        let delete = WALRecord(
            lsn: 13, timestampMs: 1_700_000_000_250, op: .delete, expiresAtMs: 0, key: Array("user:1".utf8),
            value: [])
        #expect(
            Text.line(for: delete, offset: 93)
                == "lsn=13 op=delete key=\"user:1\" value_bytes=0 expires_at_ms=0 timestamp_ms=1700000000250 offset=93")
    }

    @Test func anEpochMarkerPrintsItsEpochInsteadOfAKey() {
        let marker = WALRecord.epochMarker(2, lsn: 1001, timestampMs: 1_700_000_000_000)
        #expect(Text.line(for: marker, offset: 40) == "lsn=1001 op=epoch epoch=2 timestamp_ms=1700000000000 offset=40")
    }

    @Test func printableKeysAreQuotedAndTheRestIsHex() {
        #expect(Text.quoted(Array("user:1".utf8)) == "\"user:1\"")
        #expect(Text.quoted([]) == "\"\"")
        #expect(Text.quoted(Array("a b=c".utf8)) == "\"a b=c\"", "spaces and = stay inside the quotes")
        #expect(Text.quoted(Array(#"say "hi" \o/"#.utf8)) == #""say \"hi\" \\o/""#)
        #expect(Text.quoted(Array("ключ-🌳".utf8)) == "\"ключ-🌳\"")
        #expect(Text.quoted([0x6b, 0xff]) == "hex:6bff", "not UTF-8")
        #expect(Text.quoted(Array("a\tb".utf8)) == "hex:610962", "a control character")
        #expect(Text.quoted(Array("a\u{2028}b".utf8)) == "hex:61e280a862", "a line separator")
        #expect(Text.quoted(Array("\u{202E}txt".utf8)) == "hex:e280ae747874", "a bidi override (format)")
    }

    @Test func aFileLineGivesItsHeader() {
        let header = WALInspector.SegmentHeader(
            path: "/var/lib/erdtree/wal/00000000000000000001.log", firstLSN: 1,
            replicationID: "000102030405060708090a0b0c0d0e0f", compacted: false, bytes: 141)
        #expect(
            Text.line(for: header)
                == "# file=\"/var/lib/erdtree/wal/00000000000000000001.log\" first_lsn=1 compacted=false "
                + "replication_id=000102030405060708090a0b0c0d0e0f bytes=141")
    }

    @Test func theSummaryLineListsEpochsOrNone() {
        var summary = WALInspector.Summary(files: 3, records: 1234, firstLSN: 1, lastLSN: 1234)
        #expect(
            Text.line(for: summary)
                == "ok files=3 records=1234 first_lsn=1 last_lsn=1234 epochs=none compacted_files=0 "
                + "compaction_pending=false")
        summary.epochStarts = [.init(epoch: 2, lsn: 1001), .init(epoch: 3, lsn: 1200)]
        summary.compactedFiles = 1
        summary.compactionPending = true
        #expect(
            Text.line(for: summary)
                == "ok files=3 records=1234 first_lsn=1 last_lsn=1234 epochs=2@1001,3@1200 compacted_files=1 "
                + "compaction_pending=true")
    }

    @Test func aProblemSaysFileOffsetAndTheLSNsItKnows() {
        var problem = WALInspector.Problem(
            path: "/wal/00000000000000000001.log", offset: 4242, afterLSN: 17, reason: "checksum mismatch")
        #expect(problem.description == "/wal/00000000000000000001.log: offset 4242 (after LSN 17): checksum mismatch")
        problem.lsn = 19
        #expect(problem.description.contains("offset 4242 (LSN 19, after LSN 17): "))
        problem.afterLSN = nil
        #expect(problem.description.contains("offset 4242 (LSN 19): "))
        problem.lsn = nil
        #expect(problem.description == "/wal/00000000000000000001.log: offset 4242: checksum mismatch")
        problem.offset = nil
        #expect(problem.description == "/wal/00000000000000000001.log: checksum mismatch")
    }
}
