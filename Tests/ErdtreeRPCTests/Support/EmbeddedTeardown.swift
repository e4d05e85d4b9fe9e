import NIOCore
import NIOEmbedded

extension EmbeddedChannel {
    /// Closes the channel if it is still open and shuts its loop down, which fails the timers
    /// still queued there. An `EmbeddedChannel` left open keeps its pipeline, and a queued timer
    /// its handler, in a cycle with the channel that is never freed (LeakSanitizer reports it).
    func tearDown() {
        _ = try? finish(acceptAlreadyClosed: true)
        try? embeddedEventLoop.syncShutdownGracefully()
    }
}
