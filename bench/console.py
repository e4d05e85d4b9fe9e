"""Progress on stderr, and the error that stops the benchmark ("bench: …", exit 1)."""

from __future__ import annotations

import sys
from pathlib import Path


class Fatal(Exception):
    """Stops the run; `python -m bench` prints "bench: MESSAGE" and exits 1 (after cleanup)."""


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def show(text: str) -> None:
    """Output of a failed client or server, shown before the Fatal that refers to it ("above")."""
    sys.stderr.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stderr.flush()


def show_file(path: Path, lines: int | None = None) -> None:
    """A file, or its last `lines` lines, shown the same way."""
    text = path.read_text(errors="replace")
    show("\n".join(text.splitlines()[-lines:]) if lines else text)
