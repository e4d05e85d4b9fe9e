import CLibFuzzer

#if canImport(Glibc)
    import Glibc
#endif

/// Hands the process to libFuzzer with `callback` as the input runner and exits with its result.
///
/// The harness's `callback` is also exported as `LLVMFuzzerTestOneInput` (`@_cdecl`), so whichever
/// `main` the linker keeps, libFuzzer's or the harness's `<Target>_main`, runs the same code.
public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// Stops the run as a crash when a property the harness checks does not hold, so libFuzzer saves
/// the input as a `crash-` artifact like any other failure.
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #file, line: UInt = #line
) {
    if !condition() { fatalError("property violated: \(message())", file: file, line: line) }
}
