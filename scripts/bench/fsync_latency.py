#!/usr/bin/env python3
"""Measures what one durable append costs on this disk: write 100 bytes to the
end of a file, then fsync it, COUNT times (default 200), in DIR.

  fsync_latency.py DIR [COUNT]   -> "median_us p99_us"

The durable rows of bench.sh are bounded by this figure (a server can ack a
group-committed batch no sooner than one fsync after it was written), so the
report prints it next to them.
"""
import math
import os
import statistics
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    count = int(argv[2]) if len(argv) == 3 else 200
    path = os.path.join(argv[1], "fsync-probe.bin")
    record = b"r" * 100
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        # One unmeasured append first: creating the file's first block costs
        # a metadata update the later appends do not pay.
        os.write(fd, record)
        os.fsync(fd)
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(fd, record)
            os.fsync(fd)
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    p99 = samples[max(0, math.ceil(0.99 * len(samples)) - 1)]
    print(f"{statistics.median(samples):.0f} {p99:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
