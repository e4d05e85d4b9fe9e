/// Parsers for the human-written quantities in config files and CLI flags.
///
/// Both return `nil` for text they cannot read and leave range checks (zero, minimums) to the
/// caller, which knows the key and can say why a value is too small. The CLI reuses
/// `duration(_:)` for `--ttl`.
///
/// Sizes are binary: `1KB` is 1024 bytes, the way Redis and most operators read a memory or file
/// size, and the `KiB` spellings mean the same. Durations follow Go's `time.ParseDuration`, which
/// the seed's files were written for: one or more `<number><unit>` parts, `1m30s` and `1.5s` included.
public enum ConfigUnits {
    /// Parses a byte size: a plain integer (bytes) or an integer with a unit.
    ///
    /// Units, case-insensitive, with an optional space before them: `B`; `K`, `KB`, `KiB`;
    /// `M`, `MB`, `MiB`; `G`, `GB`, `GiB`; `T`, `TB`, `TiB` — each step is 1024.
    /// Underscores between digits are allowed (`1_048_576`), as in YAML 1.1 integers.
    ///
    /// - Returns: The size in bytes, or `nil` if the text is not a size or does not fit in `Int64`.
    ///   Zero parses; negative sizes do not.
    public static func byteSize(_ text: String) -> Int64? {
        let sizeText = trimmed(text)
        let digitsEnd = sizeText.firstIndex { !(isDigit($0) || $0 == "_") } ?? sizeText.endIndex
        guard let count = parseDigits(sizeText[..<digitsEnd]) else { return nil }
        let unit = trimmed(sizeText[digitsEnd...]).lowercased()
        let multiplier: Int64
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        case "t", "tb", "tib": multiplier = 1 << 40
        default: return nil
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : bytes
    }

    /// Parses a duration such as `500us`, `100ms`, `1s`, `2m`, `1h`, `1m30s` or `1.5s`.
    ///
    /// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A unit is required, because a bare `5`
    /// could mean seconds or milliseconds and guessing wrong is silent.
    ///
    /// - Returns: The duration at nanosecond precision, or `nil` if the text is not a duration or
    ///   is longer than `Int64.max` nanoseconds (about 292 years). Zero parses; negative durations do not.
    /// `duration` in whole milliseconds (rounded down), as the protos and the CLI count time.
    public static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    public static func duration(_ text: String) -> Duration? {
        var rest = Substring(trimmed(text))
        guard !rest.isEmpty else { return nil }
        var totalNanoseconds: Int64 = 0
        while !rest.isEmpty {
            let wholeEnd = rest.firstIndex { !isDigit($0) } ?? rest.endIndex
            let whole = rest[..<wholeEnd]
            rest = rest[wholeEnd...]
            var fraction = Substring("")
            if rest.first == "." {
                rest = rest.dropFirst()
                let fractionEnd = rest.firstIndex { !isDigit($0) } ?? rest.endIndex
                fraction = rest[..<fractionEnd]
                rest = rest[fractionEnd...]
            }
            guard !(whole.isEmpty && fraction.isEmpty) else { return nil }
            let unitEnd = rest.firstIndex { isDigit($0) || $0 == "." } ?? rest.endIndex
            guard let unit = nanosecondsPerUnit[String(rest[..<unitEnd])] else { return nil }
            rest = rest[unitEnd...]
            guard let part = nanoseconds(whole: whole, fraction: fraction, unit: unit) else { return nil }
            let (sum, overflow) = totalNanoseconds.addingReportingOverflow(part)
            guard !overflow else { return nil }
            totalNanoseconds = sum
        }
        return .nanoseconds(totalNanoseconds)
    }

    private static let nanosecondsPerUnit: [String: Int64] = [
        "ns": 1,
        "us": 1_000,
        "µs": 1_000,
        "μs": 1_000,  // U+03BC GREEK SMALL LETTER MU, which some keyboards produce instead of U+00B5
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60 * 1_000_000_000,
        "h": 3_600 * 1_000_000_000,
    ]

    /// `whole.fraction × unit` in integer arithmetic, so `0.1s` is exactly 100ms; digits beyond
    /// nanosecond precision are dropped.
    private static func nanoseconds(whole: Substring, fraction: Substring, unit: Int64) -> Int64? {
        let wholeValue: Int64
        if whole.isEmpty {
            wholeValue = 0
        } else {
            guard let value = Int64(whole) else { return nil }
            wholeValue = value
        }
        let (wholeNanoseconds, overflow) = wholeValue.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        var fractionNanoseconds: Int64 = 0
        var scale = unit
        for digit in fraction {
            scale /= 10
            guard scale > 0, let value = digit.wholeNumberValue else { break }
            fractionNanoseconds += Int64(value) * scale
        }
        let (total, sumOverflow) = wholeNanoseconds.addingReportingOverflow(fractionNanoseconds)
        return sumOverflow ? nil : total
    }

    /// Digits with optional single underscores between them; no sign.
    static func parseDigits(_ text: Substring) -> Int64? {
        guard let first = text.first, let last = text.last, isDigit(first), isDigit(last),
            !text.contains("__")
        else { return nil }
        return Int64(text.filter { $0 != "_" })
    }

    /// Whether `character` is 0–9; `Character.isNumber` alone also accepts other scripts' digits.
    static func isDigit(_ character: Character) -> Bool { character.isASCII && character.isNumber }

    /// `text` without leading and trailing spaces, tabs and line breaks.
    static func trimmed<S: StringProtocol>(_ text: S) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = text.firstIndex(where: { !isSpace($0) }),
            let end = text.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(text[start...end])
    }
}
