import Testing

@testable import ErdtreeRPC

/// `grpc-timeout` as a peer sends it: `TimeoutValue` (1 to 8 ASCII digits) then one unit.
@Suite struct GRPCTimeoutTests {
    @Test(arguments: [
        ("1H", Int64(3_600_000_000_000)),
        ("2M", 120_000_000_000),
        ("3S", 3_000_000_000),
        ("250m", 250_000_000),
        ("40u", 40_000),
        ("7n", 7),
        ("0S", 0),
        ("00000010m", 10_000_000),
    ])
    func everyUnitParses(header: String, nanoseconds: Int64) {
        #expect(parse(header) == nanoseconds)
    }

    @Test func eightDigitsAreAccepted() {
        #expect(parse("99999999n") == 99_999_999)
        #expect(parse("12345678u") == 12_345_678_000)
        #expect(parse("99999999S") == 99_999_999_000_000_000)
    }

    @Test func eightDigitsOfHoursClampInsteadOfOverflowing() {
        // 99999999 h is about 3.6e20 ns, past Int64: "never" rather than a trap or a wrap.
        // (99999999 M, about 6e18 ns, still fits.)
        #expect(parse("99999999H") == Int64.max)
        #expect(parse("99999999M") == 5_999_999_940_000_000_000)
    }

    @Test(arguments: [
        "",  // empty
        "S",  // unit without a value
        "100",  // value without a unit
        "123456789S",  // nine digits
        "10s",  // seconds are upper-case
        "10x",  // no such unit
        "1h",  // hours are upper-case
        "1a0S",  // non-digit inside
        "-1S",  // sign
        "+1S",
        " 1S",  // whitespace
        "1S ",
        "1.5S",
        "１S",  // a non-ASCII digit
    ])
    func malformedHeaderIsNil(header: String) {
        #expect(parse(header) == nil, "'\(header)' parsed")
    }

    @Test(arguments: [
        Int64(0), 1, 999, 99_999_999, 100_000_000, 123_456_789, 1_000_000_000, 99_999_999_999,
        100_000_000_000, 3_600_000_000_000, 99_999_999_999_999, 100_000_000_000_000, 86_400_000_000_000_000,
    ])
    func formatThenParseGivesTheTimeoutRoundedDownToItsUnit(nanoseconds: Int64) throws {
        let header = GRPCTimeout.format(nanoseconds: nanoseconds)
        #expect(header.utf8.count <= 9, "'\(header)' has more than 8 digits")
        let parsed = try #require(parse(header), "'\(header)' does not parse")
        #expect(parsed <= nanoseconds)
        // Never coarser than the unit chosen: at most 1 µs lost below 100 s, 1 ms below ~27 h.
        let unit: Int64 =
            switch header.last {
            case "n": 1
            case "u": 1_000
            case "m": 1_000_000
            default: 1_000_000_000
            }
        #expect(nanoseconds - parsed < unit, "'\(header)' lost \(nanoseconds - parsed) ns")
    }

    @Test func shortTimeoutsAreFormattedExactly() {
        #expect(GRPCTimeout.format(nanoseconds: 0) == "0n")
        #expect(GRPCTimeout.format(nanoseconds: 99_999_999) == "99999999n")
        #expect(GRPCTimeout.format(nanoseconds: 200_000_000) == "200000u")
    }

    @Test func negativeTimeoutFormatsAsZero() {
        #expect(GRPCTimeout.format(nanoseconds: -5) == "0n")
    }

    @Test func enormousTimeoutFormatsWithinEightDigits() {
        let header = GRPCTimeout.format(nanoseconds: .max)
        #expect(header == "99999999S")
        #expect(parse(header) == 99_999_999_000_000_000)
    }

    private func parse(_ header: String) -> Int64? {
        Array(header.utf8).withUnsafeBytes { GRPCTimeout.parse($0) }
    }
}
