"""repl_probe (repl_probe.c), the replication and switchover suites' client: lag probes, the
Redis fixed-rate write load, the catch-up reads and the switchover loads. Compiled for each run against libnghttp2 (a build
dependency); see its header for what each mode prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.console import Fatal
from bench.processes import Processes

SOURCE = Path(__file__).with_name("repl_probe.c")


def c_compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


class Probe:
    def __init__(self, processes: Processes, tmp: Path) -> None:
        self.processes = processes
        self.binary = tmp / "repl_probe"
        cc = c_compiler() or "cc"
        done = subprocess.run([cc, "-O2", "-o", str(self.binary), str(SOURCE), "-lnghttp2"], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise Fatal(f"could not compile {SOURCE} with {cc} (it needs libnghttp2-dev: scripts/install-deps.sh): "
                        f"{done.stderr.strip()}")

    def argv(self, *args) -> list[str]:
        return [str(self.binary), *map(str, args)]

    def run(self, out: Path, *args) -> str:
        """Runs one probe mode to its end; its stdout, or Fatal with its last error line."""
        err = out.with_name(out.name + ".err")
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        self.processes.clients.append(proc)
        if self.processes.finish_client(proc) != 0:
            lines = err.read_text(errors="replace").splitlines()
            raise Fatal(f"repl_probe {args[0]}: {lines[-1] if lines else 'failed'}")
        return out.read_text()
