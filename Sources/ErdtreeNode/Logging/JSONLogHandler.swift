import ErdtreeRPC
import ErdtreeSync
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler that writes each event as one JSON object on one line of stderr, for a log
/// collector (`log.format: json`, docs/configuration.md#log). swift-log ships only the text
/// `StreamLogHandler`.
///
/// A line holds `timestamp` (RFC 3339, UTC, microseconds), `level` (swift-log's name: `info`),
/// `label`, `message`, `metadata` and `source` (the module that logged). `metadata` is always an
/// object: the handler's, then the metadata provider's, then the call's, later keys winning, with
/// an error passed to the call added as `error.message` and `error.type`, as `StreamLogHandler`
/// merges them, so a field the text format shows is in the JSON too. Nested values stay arrays
/// and objects; a `stringConvertible` becomes its description. Keys are sorted, so equal events
/// give equal lines.
///
/// Each line goes out in one `write(2)` (and the rare partial write's remainder under the same
/// lock), so lines logged at once from different event loops never interleave, even past
/// `PIPE_BUF`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: @Sendable ([UInt8]) -> Void

    /// A handler writing to stderr, what `LoggingSystem.bootstrap` makes for each label.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.init(label: label, metadataProvider: metadataProvider, fileDescriptor: 2)
    }

    /// A handler writing to `fileDescriptor`, which must stay open as long as it logs.
    init(label: String, metadataProvider: Logger.MetadataProvider?, fileDescriptor: Int32) {
        self.init(label: label, metadataProvider: metadataProvider) { Self.write($0, to: fileDescriptor) }
    }

    /// A handler that hands each finished line, newline included, to `output`.
    init(label: String, metadataProvider: Logger.MetadataProvider?, output: @escaping @Sendable ([UInt8]) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() {
            merged.merge(provided) { _, provided in provided }
        }
        if let explicit = event.metadata {
            merged.merge(explicit) { _, explicit in explicit }
        }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        output(
            Self.line(
                timestamp: Self.rfc3339(seconds: Int(now.tv_sec), nanoseconds: Int(now.tv_nsec)), level: event.level,
                label: label, message: event.message.description, metadata: merged, source: event.source))
    }

    /// One event as its JSON line, `\n` included.
    static func line(
        timestamp: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata,
        source: String
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        out.append(contentsOf: #"{"timestamp":"#.utf8)
        JSONWriter.appendString(timestamp, to: &out)
        out.append(contentsOf: #","level":"#.utf8)
        JSONWriter.appendString(level.rawValue, to: &out)
        out.append(contentsOf: #","label":"#.utf8)
        JSONWriter.appendString(label, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        out.append(contentsOf: #","metadata":"#.utf8)
        append(metadata, to: &out)
        out.append(contentsOf: #","source":"#.utf8)
        JSONWriter.appendString(source, to: &out)
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    /// `seconds` since the Unix epoch as RFC 3339 in UTC with microseconds:
    /// `2026-12-04T23:07:01.123456Z`.
    static func rfc3339(seconds: Int, nanoseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func digits(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(digits(parts.tm_year + 1900, 4))-\(digits(parts.tm_mon + 1, 2))-\(digits(parts.tm_mday, 2))T"
            + "\(digits(parts.tm_hour, 2)):\(digits(parts.tm_min, 2)):\(digits(parts.tm_sec, 2))."
            + "\(digits(Int32(nanoseconds / 1000), 6))Z"
    }

    private static func append(_ metadata: Logger.Metadata, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, (key, value)) in metadata.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            append(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func append(_ value: Logger.Metadata.Value, to out: inout [UInt8]) {
        switch value {
        case .string(let text):
            JSONWriter.appendString(text, to: &out)
        case .stringConvertible(let convertible):
            JSONWriter.appendString(convertible.description, to: &out)
        case .dictionary(let dictionary):
            append(dictionary, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                append(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
    }

    /// Serialises writers: `write(2)` of one line is atomic only up to `PIPE_BUF` on a pipe, and a
    /// partial write's remainder must follow it before anyone else's line.
    private static let writeLock = Lock()

    private static func write(_ line: [UInt8], to fileDescriptor: Int32) {
        writeLock.withLock {
            line.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = Glibc.write(
                        fileDescriptor, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    // A log line that cannot be written has nowhere else to go.
                    guard written > 0 else { return }
                    offset += written
                }
            }
        }
    }
}
