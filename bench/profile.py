"""BENCH_PROFILE=1: after the report, one more Erdtree under callgrind, counters zeroed once it
is preloaded, BENCH_PROFILE_REQUESTS requests of BENCH_PROFILE_LOAD, then its top functions by
instructions, self and inclusive.

Two workarounds for Debian 12's valgrind 3.19: it cannot read the DWARF Swift 6 emits
("possibly corrupted debuginfo"), so it profiles a copy without it (the symbol table stays);
and sigsuspend_copy.c, preloaded, keeps it from crashing in dispatchMain().
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from bench import h2load
from bench.console import Fatal, note
from bench.loads import run_h2load
from bench.probe import c_compiler
from bench.servers import Running, erdtree_preload, erdtree_sections, wait_listening
from bench.suites import LOADS
from harness.node import free_port, write_config

if TYPE_CHECKING:
    from bench.run import Bench

SHIM = Path(__file__).with_name("sigsuspend_copy.c")
# Frames that were on a stack when the counters were zeroed (thread entry points, the event
# loop) get their whole inclusive cost booked as self; no real function here comes near 90 %
# self, so the self table drops lines above that.
SELF_CEILING = 90


def run(bench: Bench) -> None:
    load = LOADS[bench.settings.profile_load]
    n = bench.settings.profile_requests
    note(f"profiling: {load.label}, {n} requests, under callgrind")
    directory = bench.tmp / "profile"
    directory.mkdir()
    port = free_port()
    write_config(directory / "erdtree.yaml", port, directory / "wal", {}, **erdtree_sections(bench, "1s"))
    binary = directory / "erdtree"
    if subprocess.run(["objcopy", "--strip-debug", str(bench.erdtree_bin), str(binary)]).returncode != 0:
        raise Fatal(f"objcopy could not strip a copy of {bench.erdtree_bin}")
    cc = c_compiler() or "clang"
    shim = directory / "sigsuspend_copy.so"
    if subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM), "-ldl"]).returncode != 0:
        raise Fatal(f"could not compile {SHIM} with {cc}")
    dump_file = directory / "callgrind.out"
    log = directory / "server.log"
    proc = bench.processes.start_server(
        ["env", f"LD_PRELOAD={shim}", "valgrind", "--tool=callgrind", f"--callgrind-out-file={dump_file}",
         str(binary), "master", "--config", str(directory / "erdtree.yaml")], directory, log)
    wait_listening(proc, port, "erdtree under callgrind", log, timeout=120)
    erdtree_preload(bench, f"127.0.0.1:{port}", "erdtree (callgrind)")
    # Count only the load: zero the counters now, dump them right after.
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
    bench.instances.running[load.instance] = Running("profile", "erdtree", proc, port)
    out = directory / "h2load.out"
    run_h2load(bench, load, out, "-n", str(n))
    h2load.check(out, load.label, n)
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
    bench.processes.stop(proc)
    dump = directory / "callgrind.out.1"
    if not dump.is_file():
        raise Fatal(f"callgrind wrote no dump {dump} (server log: {log})")
    print()
    print(f"### callgrind: {load.label}, {n} requests, instructions by function, self")
    print()
    print("```")
    print(top_functions(dump, directory, inclusive=False, limit=40))
    print("```")
    print()
    print("### callgrind: the same, inclusive")
    print()
    print("```")
    print(top_functions(dump, directory, inclusive=True, limit=60))
    print("```")


def top_functions(dump: Path, directory: Path, inclusive: bool, limit: int) -> str:
    """The function lines of callgrind_annotate, biggest first, with the temp path shortened."""
    annotated = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100",
                                f"--inclusive={'yes' if inclusive else 'no'}", str(dump)],
                               capture_output=True, text=True).stdout
    (directory / "annotate.txt").write_text(annotated)
    lines, body, shown = [], False, 0
    for line in annotated.splitlines():
        if "PROGRAM TOTALS" in line:
            lines += [line, ""]
        elif "file:function" in line:
            body = True
        elif body and re.search(r"%\)", line):
            percent = float(re.sub(r"%.*", "", re.sub(r"^[^(]*\( *", "", line)) or 0)
            if not inclusive and percent >= SELF_CEILING:
                continue
            if shown < limit:
                lines.append(line.replace("???:", "").replace(f"{directory}/", ""))
                shown += 1
    text = "\n".join(lines)
    if shutil.which("swift"):
        text = subprocess.run(["swift", "demangle", "--simplified"], input=text, capture_output=True,
                              text=True).stdout.rstrip("\n")
    return text
