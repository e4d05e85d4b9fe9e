#if ERDTREE_FAILPOINTS
    import Glibc

    /// The WAL's test hooks: crash points in compaction and an injected write error.
    ///
    /// Compiled only into a failpoint build (`ERDTREE_FAILPOINTS=1 swift build`, which `make test`
    /// runs; see Package.swift), never into a release binary, like etcd's gofail failpoints: this
    /// file and every call site of a hook sit in `#if ERDTREE_FAILPOINTS`, and tests/release checks
    /// that none of these names reach the release binary.
    enum WALFailpoints {
        /// `ERDTREE_TEST_COMPACTION_CRASH=<step>` makes compaction kill the process with SIGKILL at
        /// that step, so tests can check each crash state with a real process (tests/interop
        /// test_compaction.py). The steps, in order (`WALCompaction` says what each leaves on disk):
        /// `parts-written`, `committed`, `relocated`, `old-segment-deleted` (after the first),
        /// `old-segments-deleted`, `part-renamed` (after the first), `parts-renamed`.
        static let compactionCrashVariable = "ERDTREE_TEST_COMPACTION_CRASH"

        /// Read once: compaction runs on a pool thread, and the environment does not change.
        private static let compactionCrashStep: String? = {
            guard let value = getenv(compactionCrashVariable) else { return nil }
            return String(cString: value)
        }()

        /// Called by `WriteAheadLog.compact` after each step; dies by SIGKILL at the step the
        /// environment names.
        static func compactionStepReached(_ step: String) {
            guard compactionCrashStep == step else { return }
            kill(getpid(), SIGKILL)
        }
    }

    extension WriteAheadLog {
        /// Makes the next batch write store half its bytes and then fail with `code`, as a disk
        /// filling up halfway through would. Called by tests from any thread.
        func failNextWrite(errno code: Int32) {
            shared.injectedWriteErrno.store(code, ordering: .relaxed)
        }
    }

    extension System {
        /// `write(_:_:path:)`, unless `code` is not 0: then the first half of `bytes` is written and
        /// the call fails with `code` (`WriteAheadLog.failNextWrite`).
        static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String, failingWith code: Int32)
            throws(WALError)
        {
            guard code != 0 else { return try write(fd, bytes, path: path) }
            try write(fd, UnsafeRawBufferPointer(rebasing: bytes.prefix(bytes.count / 2)), path: path)
            throw .io(call: "write", path: path, errno: code)
        }
    }
#endif
