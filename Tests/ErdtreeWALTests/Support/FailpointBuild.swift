import Testing

/// Whether this build has the WAL's failpoints (`WALFailpoints`, `WriteAheadLog.failNextWrite`).
///
/// Tests that use one carry `.enabled(if: FailpointBuild.isEnabled, FailpointBuild.skipReason)`
/// and keep their body in `#if ERDTREE_FAILPOINTS`: a plain `swift test` skips them, saying why;
/// `make test`, which builds with `ERDTREE_FAILPOINTS=1`, runs them.
enum FailpointBuild {
    #if ERDTREE_FAILPOINTS
        static let isEnabled = true
    #else
        static let isEnabled = false
    #endif

    static let skipReason = Comment(
        rawValue: "needs a failpoint build: ERDTREE_FAILPOINTS=1 swift build --build-tests && "
            + "ERDTREE_FAILPOINTS=1 swift test (make test does this)")
}
