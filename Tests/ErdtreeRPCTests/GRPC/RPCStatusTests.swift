import Testing

@testable import ErdtreeRPC

/// Status codes as grpc/doc/statuscodes.md names them, and the status as a log line reads.
@Suite struct RPCStatusTests {
    @Test func everyCanonicalCodeHasItsName() {
        let expected: [(RPCStatus.Code, Int, String)] = [
            (.ok, 0, "OK"),
            (.cancelled, 1, "CANCELLED"),
            (.unknown, 2, "UNKNOWN"),
            (.invalidArgument, 3, "INVALID_ARGUMENT"),
            (.deadlineExceeded, 4, "DEADLINE_EXCEEDED"),
            (.notFound, 5, "NOT_FOUND"),
            (.alreadyExists, 6, "ALREADY_EXISTS"),
            (.permissionDenied, 7, "PERMISSION_DENIED"),
            (.resourceExhausted, 8, "RESOURCE_EXHAUSTED"),
            (.failedPrecondition, 9, "FAILED_PRECONDITION"),
            (.aborted, 10, "ABORTED"),
            (.outOfRange, 11, "OUT_OF_RANGE"),
            (.unimplemented, 12, "UNIMPLEMENTED"),
            (.internal, 13, "INTERNAL"),
            (.unavailable, 14, "UNAVAILABLE"),
            (.dataLoss, 15, "DATA_LOSS"),
            (.unauthenticated, 16, "UNAUTHENTICATED"),
        ]
        for (code, raw, name) in expected {
            #expect(code.rawValue == raw)
            #expect(code.description == name)
            #expect(RPCStatus.Code(rawValue: raw) == code)
        }
    }

    @Test(arguments: [17, 42, -1, 1000])
    func unknownCodeIsNamedByNumber(raw: Int) {
        #expect(RPCStatus.Code(rawValue: raw).description == "CODE_\(raw)")
    }

    @Test func descriptionIsCodeThenMessage() {
        let status = RPCStatus(.invalidArgument, "key is not valid UTF-8")
        #expect(status.description == "INVALID_ARGUMENT: key is not valid UTF-8")
        #expect("\(status)" == "INVALID_ARGUMENT: key is not valid UTF-8")
    }

    @Test func descriptionWithoutMessageIsJustTheCode() {
        #expect(RPCStatus(.unavailable).description == "UNAVAILABLE")
        #expect(RPCStatus.ok.description == "OK")
    }

    @Test func okHasNoMessage() {
        #expect(RPCStatus.ok.code == .ok)
        #expect(RPCStatus.ok.message.isEmpty)
    }

    @Test func equalityComparesCodeAndMessage() {
        #expect(RPCStatus(.notFound, "x") == RPCStatus(.notFound, "x"))
        #expect(RPCStatus(.notFound, "x") != RPCStatus(.notFound, "y"))
        #expect(RPCStatus(.notFound, "x") != RPCStatus(.internal, "x"))
    }

    @Test func statusIsThrowableAndCatchableAsItsType() {
        func fail() throws(RPCStatus) { throw RPCStatus(.aborted, "conflict") }
        do {
            try fail()
            Issue.record("did not throw")
        } catch {
            #expect(error.code == .aborted)
            #expect(error.message == "conflict")
        }
    }

    @Test func metadataRoundTripsAndTakesPartInEquality() {
        let metadata = ["erdtree-master": "10.0.0.2:8080", "a": "", "z": "1 2"]
        let status = RPCStatus(.failedPrecondition, "m", metadata: metadata)
        #expect(status.metadata == metadata)
        #expect(RPCStatus(.ok).metadata.isEmpty)
        #expect(status != RPCStatus(.failedPrecondition, "m"))
        var changed = status
        changed.metadata["a"] = "x"
        #expect(changed.metadata == ["erdtree-master": "10.0.0.2:8080", "a": "x", "z": "1 2"])
        #expect(changed == RPCStatus(.failedPrecondition, "m", metadata: changed.metadata))
    }
}
