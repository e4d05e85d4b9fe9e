"""`python -m bench` (from the repository root, on .venv's Python): see bench/__init__.py."""

import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # for harness, shared with the interop and cluster tests


def main() -> int:
    import os

    from bench.console import Fatal
    from bench.run import run
    from bench.settings import Settings

    os.chdir(ROOT)

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    # Ctrl-C and SIGTERM stop the run, and every process it started (run's finally); Ctrl-C
    # even when the bench was started with SIGINT ignored (in the background of a script).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run(Settings.from_env())
    except Fatal as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
