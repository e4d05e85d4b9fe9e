import ErdtreeSync
import Foundation
import Logging
import Testing

@testable import ErdtreeNode

/// `log.format: json`: each event one line that a JSON parser reads back field for field.
@Suite struct JSONLogHandlerTests {
    /// The lines a handler wrote, as bytes.
    private final class Lines: Sendable {
        let lines = Locked<[[UInt8]]>([])
    }

    private struct Failure: Error, CustomStringConvertible {
        var description: String { "disk full" }
    }

    /// Logs through a `Logger` (so its metadata and level apply as in the node) and returns each
    /// line, which must end in its only newline, parsed.
    private func logged(
        metadata: Logger.Metadata = [:], provider: Logger.MetadataProvider? = nil, _ body: (inout Logger) -> Void
    ) throws -> [[String: Any]] {
        let sink = Lines()
        var logger = Logger(label: "erdtree.test") { label in
            JSONLogHandler(label: label, metadataProvider: provider) { line in sink.lines.withLock { $0.append(line) } }
        }
        logger.logLevel = .trace
        for (key, value) in metadata { logger[metadataKey: key] = value }
        body(&logger)
        return try sink.lines.withLock { $0 }.map { line in
            #expect(line.last == UInt8(ascii: "\n"))
            #expect(line.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") })
            let object = try JSONSerialization.jsonObject(with: Data(line))
            return try #require(object as? [String: Any])
        }
    }

    @Test func aLineHasEveryField() throws {
        let lines = try logged { $0.notice("slave connected", metadata: ["slave": "127.0.0.1:8081"]) }
        let line = try #require(lines.first)
        #expect(lines.count == 1)
        #expect(Set(line.keys) == ["timestamp", "level", "label", "message", "metadata", "source"])
        #expect(line["level"] as? String == "notice")
        #expect(line["label"] as? String == "erdtree.test")
        #expect(line["message"] as? String == "slave connected")
        #expect(line["metadata"] as? [String: String] == ["slave": "127.0.0.1:8081"])
        #expect(line["source"] as? String == "ErdtreeNodeTests")
    }

    @Test func metadataIsAnObjectEvenWhenEmpty() throws {
        let line = try #require(try logged { $0.info("started") }.first)
        #expect((line["metadata"] as? [String: Any])?.isEmpty == true)
    }

    @Test func theTimestampIsRFC3339InUTCWithMicroseconds() throws {
        #expect(JSONLogHandler.rfc3339(seconds: 0, nanoseconds: 5_000) == "1970-01-01T00:00:00.000005Z")
        #expect(
            JSONLogHandler.rfc3339(seconds: 1_796_425_621, nanoseconds: 123_456_789) == "2026-12-04T23:07:01.123456Z")
        let line = try #require(try logged { $0.info("now") }.first)
        let stamp = try #require(line["timestamp"] as? String)
        #expect(stamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z/) != nil)
        let parsed = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: stamp))
        #expect(abs(parsed.timeIntervalSinceNow) < 60)
    }

    @Test func stringsAreEscapedAndNonASCIIStaysUTF8() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t return \r bell \u{07} nul \u{0} é 龍 🌳"
        let lines = try logged { $0.warning("\(tricky)", metadata: ["key \"\n": "\(tricky)"]) }
        let line = try #require(lines.first)
        #expect(line["message"] as? String == tricky)
        #expect(line["metadata"] as? [String: String] == ["key \"\n": tricky])
        let raw = try #require(try rawLines { $0.warning("é 龍 \u{07}") }.first)
        #expect(raw.contains(#""message":"é 龍 \u0007""#))
    }

    @Test func nestedMetadataKeepsItsShape() throws {
        let metadata: Logger.Metadata = [
            "peers": .array([.string("a"), .stringConvertible(7), .dictionary(["inner": .string("x")])]),
            "limits": .dictionary(["max": .string("4096"), "names": .array([.string("k"), .string("v")])]),
            "lsn": .stringConvertible(UInt64(42)),
        ]
        let lines = try logged { $0.error("replication stream failed", metadata: metadata) }
        let written = try #require(lines.first?["metadata"] as? [String: Any])
        let peers = try #require(written["peers"] as? [Any])
        #expect(peers.count == 3)
        #expect(peers[0] as? String == "a")
        #expect(peers[1] as? String == "7")
        #expect(peers[2] as? [String: String] == ["inner": "x"])
        let limits = try #require(written["limits"] as? [String: Any])
        #expect(limits["max"] as? String == "4096")
        #expect(limits["names"] as? [String] == ["k", "v"])
        #expect(written["lsn"] as? String == "42")
    }

    @Test func theCallsMetadataWinsOverTheProvidersOverTheLoggers() throws {
        let provider = Logger.MetadataProvider { ["from": "provider", "trace_id": "abc"] }
        let lines = try logged(metadata: ["from": "logger", "node": "n1"], provider: provider) {
            $0.info("one", metadata: ["from": "call"])
            $0.info("two")
        }
        #expect(lines.count == 2)
        #expect(lines[0]["metadata"] as? [String: String] == ["from": "call", "node": "n1", "trace_id": "abc"])
        #expect(lines[1]["metadata"] as? [String: String] == ["from": "provider", "node": "n1", "trace_id": "abc"])
    }

    @Test func anErrorPassedToTheCallIsInTheMetadata() throws {
        let line = try #require(try logged { $0.error("append failed", error: Failure()) }.first)
        let metadata = try #require(line["metadata"] as? [String: String])
        #expect(metadata["error.message"] == "disk full")
        #expect(metadata["error.type"]?.hasSuffix("Failure") == true)
    }

    @Test func theLevelFiltersAsTheLoggerSays() throws {
        let lines = try logged {
            $0.logLevel = .warning
            $0.info("dropped")
            $0.warning("kept")
        }
        #expect(lines.map { $0["message"] as? String } == ["kept"])
    }

    /// Lines far longer than a pipe holds (its `write(2)`s come back partial) from many threads at
    /// once, through a real pipe, as stderr is under a container runtime: none may cut into another.
    @Test func linesFromManyThreadsDoNotInterleaveOnAPipe() throws {
        let pipe = Pipe()
        let reader = DispatchQueue(label: "pipe reader")
        let drained = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var output = Data()
        reader.async {
            output = pipe.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let descriptor = pipe.fileHandleForWriting.fileDescriptor
        let logger = Logger(label: "erdtree.test") { label in
            JSONLogHandler(label: label, metadataProvider: nil, fileDescriptor: descriptor)
        }
        let padding = String(repeating: "x", count: 200_000)
        DispatchQueue.concurrentPerform(iterations: 40) { index in
            logger.info("line \(index)", metadata: ["pad": "\(padding)"])
        }
        try pipe.fileHandleForWriting.close()
        drained.wait()
        let lines = output.split(separator: UInt8(ascii: "\n"))
        #expect(lines.count == 40)
        let messages = try lines.map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            return try #require(object["message"] as? String)
        }
        #expect(Set(messages) == Set((0..<40).map { "line \($0)" }))
    }

    /// The lines as text, for checks on the exact bytes.
    private func rawLines(_ body: (inout Logger) -> Void) throws -> [String] {
        let sink = Lines()
        var logger = Logger(label: "raw") { label in
            JSONLogHandler(label: label, metadataProvider: nil) { line in sink.lines.withLock { $0.append(line) } }
        }
        body(&logger)
        return sink.lines.withLock { $0 }.map { String(decoding: $0, as: UTF8.self) }
    }
}

extension ISO8601DateFormatter {
    fileprivate static var withFractionalSeconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
