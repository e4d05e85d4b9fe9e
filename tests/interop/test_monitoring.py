"""Monitoring (issue 17): deploy/prometheus.yml and deploy/alerts.yml pass promtool, every
alert has unit tests, and a real Prometheus (Debian's `prometheus` package) scrapes a real
master and two slaves and sees what they did.

Prometheus is queried only through its HTTP API, the way a dashboard would: the tests never
read /metrics themselves, so a figure that is right on the node but lost on the way (a
malformed exposition, a label Prometheus rejects) fails here too.

Environment: ERDTREE_BIN, the binary; `prometheus` and `promtool` on PATH or in /usr/bin
(scripts/install-deps.sh test installs them).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml

from conftest import start_server, stop_server
from harness.node import DIE_WITH_PARENT, free_port
from support import remember_tokens, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "alerts.yml"
ALERT_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"

# Short, so that a test waits a second or two for a scrape rather than the deploy's 15 s.
SCRAPE_INTERVAL_S = 0.5
WAIT_S = 30


def prometheus_tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if not found:
        pytest.fail(f"{name} not found: run scripts/install-deps.sh test (Debian's prometheus package)")
    return found


def promtool(*args: str) -> str:
    done = run([prometheus_tool("promtool"), *args])
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{out}"
    return out


# --------------------------------------------------------------------------
# promtool on the shipped files
# --------------------------------------------------------------------------


def test_promtool_accepts_the_shipped_config_and_rules():
    out = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    # check config also checks the rule files it names: they must be found, next to it.
    assert "1 rule files found" in out and "alerts.yml" in out, out
    promtool("check", "rules", str(ALERTS))
    # The secure variant names certificates that exist only inside the container.
    promtool("check", "config", "--syntax-only", str(DEPLOY / "prometheus.secure.yml"))


def alert_names() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_unit_tests_where_it_fires_and_where_it_stays_silent_and_they_pass():
    promtool("test", "rules", str(ALERT_TESTS))
    cases = [case for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
             for case in group.get("alert_rule_test", [])]
    names = alert_names()
    assert len(names) >= 5, names
    for name in names:
        evals = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in evals), f"no test where {name} fires"
        assert any(case.get("exp_alerts") == [] for case in evals), f"no test where {name} stays silent"
        # A firing case names fewer series than its input has, so the others staying silent is
        # checked too (promtool compares the whole list).
    assert {case["alertname"] for case in cases} <= set(names), "a test for an alert that no longer exists"


# --------------------------------------------------------------------------
# A real Prometheus scraping a master and two slaves
# --------------------------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], job: dict | None = None):
        """Scrapes `targets` with the scrape job `job` (the deploy's, say) or a plain one."""
        self.port = free_port()
        config = {
            "global": {"scrape_interval": f"{int(SCRAPE_INTERVAL_S * 1000)}ms",
                       "scrape_timeout": f"{int(SCRAPE_INTERVAL_S * 800)}ms",
                       "evaluation_interval": f"{int(SCRAPE_INTERVAL_S * 1000)}ms"},
            # The shipped alerts, evaluated against real series: a rule whose expression does not
            # fit what the nodes expose shows as unhealthy in /api/v1/rules.
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{**(job or {"job_name": "erdtree"}), "static_configs": [{"targets": targets}]}],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*DIE_WITH_PARENT, prometheus_tool("prometheus"), f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not self.ready():
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"prometheus not ready in {WAIT_S}s:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[tuple[dict, float]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def scalar(self, expr: str) -> float | None:
        """The one value `expr` gives, or None when it gives no series."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} gave several series: {result}"
        return result[0][1] if result else None

    def scraped_since(self, instance: str, since: float) -> None:
        """Waits for a scrape of `instance` that started after `since` (time.time()) and
        succeeded, so what the node did before `since` is in Prometheus."""
        deadline = time.monotonic() + WAIT_S
        while True:
            # timestamp() gives a sample's time only of a plain selector (of `up == 1` it gives
            # the query's); times up, it is 0 unless that latest scrape succeeded.
            last = self.query(f'timestamp(up{{instance="{instance}"}}) * up{{instance="{instance}"}}')
            if last and last[0][1] > since:
                return
            errors = self.target_errors()
            # A node that refuses /metrics (404 without it, 401 wanting a token) will go on
            # refusing: no point waiting out the deadline.
            assert "HTTP status 4" not in errors.get(instance, ""), f"{instance} refuses /metrics: {errors}"
            assert time.monotonic() < deadline, f"no successful scrape of {instance} in {WAIT_S}s: {errors}"
            time.sleep(SCRAPE_INTERVAL_S / 2)

    def target_errors(self) -> dict[str, str]:
        """instance -> the last scrape's error ("" when it succeeded)."""
        return {target["labels"]["instance"]: target["lastError"] for target in self.get("/api/v1/targets")["activeTargets"]}

    def value_after(self, instance: str, expr: str) -> float:
        """`expr` (0 without series) as of a scrape of `instance` made after this call."""
        self.scraped_since(instance, time.time())
        return self.scalar(f"sum({expr}) or vector(0)")

    def wait_until(self, expr: str, check, what: str) -> float | None:
        deadline = time.monotonic() + WAIT_S
        while True:
            value = self.scalar(expr)
            if check(value):
                return value
            assert time.monotonic() < deadline, f"{what}: {expr} is {value} after {WAIT_S}s"
            time.sleep(SCRAPE_INTERVAL_S / 2)

    def stop(self) -> int | None:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return None


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, request):
    """A master (`wal.sync_interval: always`, so every acknowledged Set waited for an fsync), two
    slaves following it, and a Prometheus scraping all three every 500 ms."""
    tmp = tmp_path_factory.mktemp("monitoring")
    master = start_server(tmp / "master", wal={"sync_interval": "always"})
    slaves = [start_server(tmp / f"slave{i}", role="slave",
                           master={"address": master.address, "sync_interval": "200ms"}) for i in (1, 2)]
    nodes = [master, *slaves]
    failures_before = request.session.testsfailed
    prometheus = Prometheus(tmp / "prometheus", [node.address for node in nodes])
    try:
        yield {"master": master, "slaves": slaves, "prometheus": prometheus}
    finally:
        failed = request.session.testsfailed > failures_before
        for node in nodes:
            if node.alive():  # a test that failed between SIGSTOP and SIGCONT
                os.kill(node.proc.pid, signal.SIGCONT)
        code = prometheus.stop()
        for node in [*slaves, master]:
            stop_server(node, failed)
        if failed:
            print(f"--- prometheus log ---\n{prometheus.log()}")
        assert code == 0, f"prometheus exited with {code}:\n{prometheus.log()}"


def kv(pb, address):
    channel = grpc.insecure_channel(address)
    return channel, pb.kv_grpc.KVStoreStub(channel)


def sets(pb, address: str, n: int, prefix: str) -> None:
    """n Sets one after another, each acknowledged before the next goes."""
    channel, stub = kv(pb, address)
    with channel:
        for i in range(n):
            stub.Set(pb.kv.SetRequest(key=f"{prefix}-{i}", value=b"v%d" % i), timeout=10)


def gets(pb, address: str, n: int, prefix: str) -> None:
    channel, stub = kv(pb, address)
    with channel:
        for i in range(n):
            stub.Get(pb.kv.GetRequest(key=f"{prefix}-{i % 5}"), timeout=10)


def rpc_count(instance: str, method: str) -> str:
    # Summed over code and protocol: every call counts once, whatever it answered.
    return (f'sum(erdtree_rpc_requests_total{{instance="{instance}", '
            f'service="erdtree.v1.KVStore", method="{method}"}})')


def test_prometheus_scrapes_the_master_and_both_slaves(monitored):
    prometheus = monitored["prometheus"]
    for node in [monitored["master"], *monitored["slaves"]]:
        prometheus.scraped_since(node.address, time.time())
    up = {metric["instance"]: value for metric, value in prometheus.query('up{job="erdtree"}')}
    assert up == {node.address: 1.0 for node in [monitored["master"], *monitored["slaves"]]}, up


def test_rpc_counters_rise_by_exactly_the_sets_and_gets_made(pb, monitored):
    prometheus, master, slave = monitored["prometheus"], monitored["master"], monitored["slaves"][0]
    before = {(node.address, method): prometheus.value_after(node.address, rpc_count(node.address, method))
              for node in (master, slave) for method in ("Set", "Get")}
    # Odd, distinct numbers, so that a counter counting another method's calls, or a call
    # twice, or the slaves' replication of the Sets, cannot land on the right figure.
    sets(pb, master.address, 37, "counted")
    gets(pb, master.address, 23, "counted")
    gets(pb, slave.address, 11, "counted")
    after = {(node.address, method): prometheus.value_after(node.address, rpc_count(node.address, method))
             for node in (master, slave) for method in ("Set", "Get")}
    rise = {key: after[key] - before[key] for key in before}
    assert rise == {(master.address, "Set"): 37, (master.address, "Get"): 23,
                    (slave.address, "Set"): 0, (slave.address, "Get"): 11}, rise
    # The calls were gRPC and succeeded: that is where they are counted.
    ok = prometheus.scalar(f'sum(erdtree_rpc_requests_total{{instance="{master.address}", '
                           f'service="erdtree.v1.KVStore", method="Set", code="OK", protocol="grpc"}})')
    assert ok is not None and ok >= 37, ok


def test_the_fsync_histogram_has_observations_under_sync_always(pb, monitored):
    prometheus, master = monitored["prometheus"], monitored["master"]
    count = f'erdtree_wal_fsync_duration_seconds_count{{instance="{master.address}"}}'
    before = prometheus.value_after(master.address, count)
    # One after another: with sync "always" each waits for its own fsync (no group commit to share).
    sets(pb, master.address, 25, "synced")
    after = prometheus.value_after(master.address, count)
    assert after - before >= 25, (before, after)
    # One query, so both come from the same scrape.
    uncounted = prometheus.scalar(
        f'sum(erdtree_wal_fsync_duration_seconds_count{{instance="{master.address}"}})'
        f' - sum(erdtree_wal_fsync_duration_seconds_bucket{{instance="{master.address}", le="+Inf"}})')
    assert uncounted == 0, "the +Inf bucket must hold every observation"
    total = prometheus.scalar(f'erdtree_wal_fsync_duration_seconds_sum{{instance="{master.address}"}}')
    assert total is not None and total > 0, total
    # What the ErdtreeWALFsyncSlow alert computes: a real latency, not NaN (no observations).
    p99 = prometheus.scalar(f'histogram_quantile(0.99, sum by (le) (rate(erdtree_wal_fsync_duration_seconds_bucket'
                            f'{{instance="{master.address}"}}[1m])))')
    assert p99 is not None and not math.isnan(p99) and 0 < p99 < 10, p99


def slave_lag(master, slave, unit: str) -> str:
    return f'erdtree_replication_slave_lag_{unit}{{instance="{master.address}", slave="{slave.address}"}}'


def test_replication_lag_series_exist_for_both_slaves_and_show_a_stopped_one(pb, monitored):
    prometheus, master = monitored["prometheus"], monitored["master"]
    stopped, running = monitored["slaves"]
    sets(pb, master.address, 10, "warmup")
    # Both caught up, each with its own series on the master, named by the address it serves on.
    for slave in (stopped, running):
        prometheus.wait_until(slave_lag(master, slave, "entries"), lambda v: v == 0, f"{slave.address} caught up")
    labelled = {metric["slave"] for metric, _ in prometheus.query(
        f'erdtree_replication_slave_lag_seconds{{instance="{master.address}"}}')}
    assert labelled == {stopped.address, running.address}, labelled
    # And each slave's own view of its lag (what ErdtreeSlaveLagging reads): caught up.
    for slave in (stopped, running):
        prometheus.wait_until(f'erdtree_replication_lag_entries{{instance="{slave.address}"}}', lambda v: v == 0,
                              f"{slave.address}'s own lag")
        assert prometheus.scalar(f'erdtree_replication_lag_seconds{{instance="{slave.address}"}}') is not None

    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        sets(pb, master.address, 200, "while-stopped")  # asynchronous replication: no slave holds them up
        # Exactly the writes it missed: it had acknowledged everything before.
        prometheus.wait_until(slave_lag(master, stopped, "entries"), lambda v: v is not None and v >= 200,
                              "the stopped slave's lag in entries")
        time.sleep(2 * SCRAPE_INTERVAL_S)
        assert prometheus.scalar(slave_lag(master, stopped, "entries")) == 200
        # The other slave took them all.
        prometheus.wait_until(slave_lag(master, running, "entries"), lambda v: v == 0, "the running slave's lag")
        first = prometheus.wait_until(slave_lag(master, stopped, "seconds"), lambda v: v is not None and v > 0,
                                      "the stopped slave's lag in seconds")
        time.sleep(1.5)
        prometheus.scraped_since(master.address, time.time())
        later = prometheus.scalar(slave_lag(master, stopped, "seconds"))
        assert later is not None and later >= first + 1, (first, later)
        running_seconds = prometheus.scalar(slave_lag(master, running, "seconds"))
        assert running_seconds is not None and running_seconds < 1, running_seconds
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
    prometheus.wait_until(slave_lag(master, stopped, "entries"), lambda v: v == 0, "the resumed slave catching up")
    prometheus.wait_until(slave_lag(master, stopped, "seconds"), lambda v: v is not None and v < 1,
                          "the resumed slave's lag in seconds")
    prometheus.wait_until(f'erdtree_replication_lag_entries{{instance="{stopped.address}"}}', lambda v: v == 0,
                          "the resumed slave's own lag")


def test_every_metric_the_alerts_use_is_exposed_and_every_rule_evaluates(pb, monitored):
    """The alerts are written against names on the metrics side: a renamed family would leave an
    alert that can never fire, which nothing else would notice."""
    prometheus, master = monitored["prometheus"], monitored["master"]
    sets(pb, master.address, 3, "for-alerts")
    prometheus.scraped_since(master.address, time.time())
    exprs = [rule["expr"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    used = sorted({name for expr in exprs for name in re.findall(r"\b(?:erdtree_[a-z0-9_]+|up)\b", expr)})
    assert "erdtree_wal_fsync_duration_seconds_bucket" in used and "erdtree_rpc_requests_total" in used, used
    missing = [name for name in used if not prometheus.query(f'count({{__name__="{name}"}})')]
    assert not missing, f"deploy/alerts.yml uses metrics no node exposes: {missing}"
    # Every rule has been evaluated against these series without an error.
    deadline = time.monotonic() + WAIT_S
    while True:
        rules = [rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(SCRAPE_INTERVAL_S)
    assert sorted(r["name"] for r in rules if r["type"] == "alerting") == sorted(alert_names())
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy


# --------------------------------------------------------------------------
# The secure variant: the shipped TLS settings against a master under mutual TLS
# --------------------------------------------------------------------------


def test_the_secure_scrape_config_reaches_a_master_under_mutual_tls_and_needs_its_client_certificate(tmp_path):
    """deploy/prometheus.secure.yml's scrape job, with each /run/secrets path pointing where
    compose mounts that secret (made by deploy/make-secrets.sh), scrapes the shipped secure
    master config: up == 1. The same job without the client certificate is refused in the
    handshake, so it is the certificate that lets Prometheus in."""
    secrets = tmp_path / "secrets"
    assert run([str(DEPLOY / "make-secrets.sh"), str(secrets)]).returncode == 0
    remember_tokens(*((secrets / f"{role}.token").read_text().strip() for role in ("read", "write", "admin", "replication")))
    # compose.secure.yaml mounts each secret under /run/secrets/<target>; the targets are the
    # file names make-secrets.sh uses, except the per-node ones renamed below.
    def local(value):
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        if isinstance(value, str) and value.startswith("/run/secrets/"):
            return str(secrets / value.removeprefix("/run/secrets/"))
        return value

    config = local(yaml.safe_load((DEPLOY / "master-secure-config.yaml").read_text()))
    port = free_port()
    config["server"].update(address="127.0.0.1", port=port)
    config["wal"]["directory"] = str(tmp_path / "master" / "wal")
    credentials = grpc.ssl_channel_credentials(
        (secrets / "ca.pem").read_bytes(), (secrets / "operator.key").read_bytes(), (secrets / "operator.pem").read_bytes())
    master = start_server(tmp_path / "master", port=port, config=config, credentials=credentials)
    shipped = yaml.safe_load((DEPLOY / "prometheus.secure.yml").read_text())["scrape_configs"][0]
    job = {key: value for key, value in local(shipped).items() if key != "static_configs"}
    # Under compose Prometheus dials "master", a name in the certificate; here 127.0.0.1, also in it.
    servers = []
    try:
        with_cert = Prometheus(tmp_path / "prometheus", [master.address], job)
        servers.append(with_cert)
        without_cert = Prometheus(tmp_path / "prometheus-no-cert", [master.address],
                                  {**job, "tls_config": {"ca_file": job["tls_config"]["ca_file"]}})
        servers.append(without_cert)
        with_cert.scraped_since(master.address, time.time())
        assert with_cert.scalar(f'erdtree_role{{instance="{master.address}", role="master"}}') == 1
        deadline = time.monotonic() + WAIT_S
        while not (error := without_cert.target_errors().get(master.address)):
            assert time.monotonic() < deadline, "the scrape without a client certificate never finished"
            time.sleep(SCRAPE_INTERVAL_S)
        assert without_cert.scalar(f'up{{instance="{master.address}"}}') == 0
        # Under TLS 1.3 the server checks the client's certificate after the client has sent its
        # Finished, so Go's client may see the alert, or only the close it comes with when it
        # writes the request first ("broken pipe", "connection reset", EOF).
        refused = ("certificate", "tls", "broken pipe", "connection reset", "eof")
        assert any(word in error.lower() for word in refused), error
    finally:
        codes = [server.stop() for server in servers]
        stop_server(master, False)
    assert codes == [0, 0], codes

