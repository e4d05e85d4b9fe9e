import Foundation

/// How long a test waits before it gives up: `limit`, times ERDTREE_TEST_TIME_SCALE when set.
///
/// Under a sanitizer every instruction of our code costs several times more (TSan about 5–15x),
/// so a limit that only bounds a hang, not what the test asserts, would fail a correct run on a
/// busy machine. `make test-sanitize` sets the scale; plain runs keep the limits as written.
func patience(_ limit: Duration) -> Duration {
    limit * timeScale
}

private let timeScale: Int = {
    let raw = ProcessInfo.processInfo.environment["ERDTREE_TEST_TIME_SCALE"] ?? ""
    return max(Int(raw) ?? 1, 1)
}()
