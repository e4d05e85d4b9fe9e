"""Test hooks ship in no release: the binary `make release` builds holds none of the
failpoints (Sources/ErdtreeWAL/WALFailpoints.swift), while the failpoint build that
`make test` runs (ERDTREE_FAILPOINTS=1) holds them all, so the check cannot pass because
the names it looks for are wrong.

Environment:
  ERDTREE_BIN  the failpoint debug binary (default: .build/debug/erdtree, which
               `make test` builds with ERDTREE_FAILPOINTS=1)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAILPOINT_BIN = Path(os.environ.get("ERDTREE_BIN", ROOT / ".build" / "debug" / "erdtree"))
# The Swift test bundle of the same failpoint build (`swift build --build-tests`, make test's `swift test`).
FAILPOINT_TESTS = FAILPOINT_BIN.parent / "erdtreePackageTests.xctest"
RELEASE_BIN = ROOT / ".build" / "release" / "erdtree"

# Symbols (`nm`) of the hooks the server runs (the compaction crash points, the state of the
# injected write error) and the string (`strings`) that arms the crash points: in every
# failpoint build of the server.
SERVER_SYMBOLS = ["WALFailpoints", "compactionStepReached", "injectedWriteErrno"]
SERVER_STRINGS = ["ERDTREE_TEST_COMPACTION_CRASH"]
# What only tests call (`WriteAheadLog.failNextWrite`): the linker drops it from the server
# binary either way, so its presence is checked in the failpoint build's test bundle.
TEST_SYMBOLS = ["failNextWrite"]


def symbols(binary: Path) -> str:
    """`nm -a`, demangled: Swift's mangling abbreviates repeated words (`failNextWrite` of
    `WriteAheadLog` is mangled `failNextC0`), so only the demangled names hold them whole."""
    listed = subprocess.run(["nm", "-a", str(binary)], check=True, capture_output=True, text=True).stdout
    return subprocess.run(
        [os.environ.get("SWIFT", "swift"), "demangle", "--simplified"],
        input=listed, check=True, capture_output=True, text=True).stdout


def strings(binary: Path) -> str:
    return subprocess.run(["strings", "-a", str(binary)], check=True, capture_output=True, text=True).stdout


def hooks_in(binary: Path, names: list[str], texts: list[str] = []) -> list[str]:
    listed, text = symbols(binary), strings(binary)
    return [name for name in names if name in listed] + [string for string in texts if string in text]


@pytest.fixture(scope="module")
def release_binary() -> Path:
    """Builds the release binary exactly as `make release` does, with ERDTREE_FAILPOINTS unset
    as a user's shell might not have it."""
    env = {name: value for name, value in os.environ.items() if name != "ERDTREE_FAILPOINTS"}
    build = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "release"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert build.returncode == 0, f"make release failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    assert RELEASE_BIN.is_file(), f"make release left no {RELEASE_BIN}"
    return RELEASE_BIN


def test_the_failpoint_build_has_every_hook():
    """The control: the names below are the right ones, so their absence from the release means something."""
    assert FAILPOINT_BIN.is_file(), f"{FAILPOINT_BIN} not found: build first (make test does)"
    found = hooks_in(FAILPOINT_BIN, SERVER_SYMBOLS, SERVER_STRINGS)
    assert found == SERVER_SYMBOLS + SERVER_STRINGS, (
        f"{FAILPOINT_BIN} has only {found} of {SERVER_SYMBOLS + SERVER_STRINGS}: it is not a failpoint build "
        "(ERDTREE_FAILPOINTS=1 swift build), or the hooks were renamed and this test looks for the wrong names")
    assert FAILPOINT_TESTS.is_file(), f"{FAILPOINT_TESTS} not found: ERDTREE_FAILPOINTS=1 swift build --build-tests"
    assert hooks_in(FAILPOINT_TESTS, TEST_SYMBOLS) == TEST_SYMBOLS, f"{FAILPOINT_TESTS} lacks {TEST_SYMBOLS}"


def test_the_release_binary_has_no_hook(release_binary):
    present = hooks_in(release_binary, SERVER_SYMBOLS + TEST_SYMBOLS, SERVER_STRINGS)
    assert not present, f"{release_binary} holds test hooks {present}: some code escaped `#if ERDTREE_FAILPOINTS`"


def test_make_release_ignores_an_exported_failpoint_flag():
    """A shell that exported ERDTREE_FAILPOINTS=1 (for make test) still gets a clean release:
    `make release` unsets it. Checked without building twice: the recipe must say so."""
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), "release"],
        env={**os.environ, "ERDTREE_FAILPOINTS": "1"}, capture_output=True, text=True, check=True).stdout
    build_lines = [line for line in recipe.splitlines() if " build " in line and "-c release" in line]
    assert build_lines, f"no release build in `make -n release`:\n{recipe}"
    assert all("env -u ERDTREE_FAILPOINTS" in line for line in build_lines), recipe
