import Testing
@Test func placeholderNode() { #expect(Bool(true)) }
