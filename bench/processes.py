"""Every process the benchmark starts, so that all of them stop whatever happens.

Servers get SIGTERM (Erdtree drains and exits; callgrind writes its file), then SIGKILL if
they are still there after 5 s. Followers (slaves, replicas) stop before the other servers,
so that no master stops with followers attached (they would redial it). Clients (h2load,
redis-benchmark, the probe) are killed outright.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.console import Fatal, show_file
from harness.node import DIE_WITH_PARENT

SERVER_STOP_S = 5.0


class Processes:
    def __init__(self) -> None:
        self.servers: list[subprocess.Popen] = []
        self.followers: list[subprocess.Popen] = []
        self.clients: list[subprocess.Popen] = []

    def start_server(self, argv: list[str], cwd: Path, log_path: Path, follower: bool = False) -> subprocess.Popen:
        """`argv` in `cwd` (so nothing it writes by default lands in the repo), output to `log_path`."""
        cwd.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*DIE_WITH_PARENT, *argv], cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        return self.adopt(proc, follower)

    def adopt(self, proc: subprocess.Popen, follower: bool = False) -> subprocess.Popen:
        """A server started elsewhere (harness.node), stopped with the others."""
        (self.followers if follower else self.servers).append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = SERVER_STOP_S) -> int | None:
        """SIGTERM, SIGKILL after `timeout`; the exit code if it exited by itself. Forgotten after."""
        code = None
        if proc.poll() is None:
            proc.terminate()
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            code = proc.returncode
        for table in (self.servers, self.followers):
            if proc in table:
                table.remove(proc)
        return code

    def stop_servers(self) -> None:
        for proc in [*self.followers, *self.servers]:
            self.stop(proc)

    def start_client(self, argv: list[str], out_path: Path) -> subprocess.Popen:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.clients.append(proc)
        return proc

    def finish_client(self, proc: subprocess.Popen) -> int:
        code = proc.wait()
        self.clients.remove(proc)
        return code

    def run_client(self, argv: list[str], out_path: Path, failure: str) -> None:
        """Runs a client to its end; a non-zero exit shows its output and stops the run with `failure`."""
        if self.finish_client(self.start_client(argv, out_path)) != 0:
            show_file(out_path)
            raise Fatal(failure)

    def close(self) -> None:
        for proc in self.clients:
            proc.kill()
            proc.wait()
        self.clients.clear()
        self.stop_servers()


def cpu_ticks(*procs: subprocess.Popen) -> int:
    """CPU time (utime + stime, in clock ticks) the processes have used so far."""
    total = 0
    for proc in procs:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
