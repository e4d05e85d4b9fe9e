import Testing
@Test func placeholderRPC() { #expect(Bool(true)) }
