import Testing
@Test func placeholderWAL() { #expect(Bool(true)) }
