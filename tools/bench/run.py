"""``make bench``: the gateway against the upstream direct and a naive proxy.

One run starts the Go upstream (tools/bench/upstream), then for each target —
the upstream direct, the naive baseline proxy (tools/bench/baseline_proxy.py),
the gateway (access log on, as it runs by default), the gateway without its
access log, the floor (a bare callback relay: tools/bench/floor_proxy.py),
``services/ping`` alone on uvicorn (tools/bench/ping_app.py; also with
uvicorn's access log on) and a raw ASGI
"hello" on uvicorn, the issue's measure of its machine (tools/bench/hello_app.py) —
runs its scenarios with the Go load generator (tools/bench/loadgen), prints a
table (with the server's CPU per request) plus the issue's targets with their
ratios, and writes everything to bench-results/latest.json. See
tools/bench/README.md.

    python -m tools.bench.run [--quick] [--duration S] [--warmup S] [--output PATH]
                              [--targets gateway,...] [--only small64,...]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
BUILD = ROOT / ".build"
MIB = 1 << 20
SMALL_SIZE = 200
BIG_SIZE = 10 * MIB

BUSY_WARN_PERCENT = 10.0  # idle-machine check before each target's rows

DIRECT, BASELINE, GATEWAY = "direct", "baseline", "gateway"
GATEWAY_NOLOG, PING_APP, PING_APP_EDGE = "gateway-nolog", "ping-app", "ping-app-edge"
PING_APP_LOGGED, FLOOR, HELLO = "ping-app-logged", "floor", "hello"
TARGETS = (DIRECT, BASELINE, GATEWAY, GATEWAY_NOLOG, FLOOR, HELLO, PING_APP, PING_APP_EDGE, PING_APP_LOGGED)

PROXY_SCENARIOS = ("small16", "small64", "slow256", "big16")
# Which scenarios each target runs. The gateway without its access log only
# needs the row the access log's cost is read from; the ping app only serves /ping.
PLAN: dict[str, tuple[str, ...]] = {
    DIRECT: PROXY_SCENARIOS,
    BASELINE: PROXY_SCENARIOS,
    GATEWAY: (*PROXY_SCENARIOS, "paced256", "ping64"),
    GATEWAY_NOLOG: ("small64",),
    FLOOR: ("small64",),  # what any Python proxy spends on a request here (tools/bench/floor_proxy.py)
    HELLO: ("small64",),  # the issue's machine yardstick; it answers any path with 200 bytes
    PING_APP: ("ping64",),
    PING_APP_EDGE: ("ping64",),  # the same app on the gateway's edge protocol: what the edge costs
    PING_APP_LOGGED: ("ping64",),  # the same app with uvicorn's access log on: logging on both sides
}
PONG = b"pong"

# The two checks whose operands are close (a few µs apart, a ratio near 1)
# are measured again in interleaved rounds: both servers stay up and take
# turns, A B then B A, so drift in the machine's load (other processes, CPU
# frequency) falls on both sides alike; the check reads the median round.
# (name, side A, side B, scenario)
PAIRED = (
    ("access_log", GATEWAY, GATEWAY_NOLOG, "small64"),
    ("ping", GATEWAY, PING_APP, "ping64"),
    ("ping_logged", GATEWAY, PING_APP_LOGGED, "ping64"),
    ("floor", GATEWAY, FLOOR, "small64"),
    ("hello", GATEWAY, HELLO, "small64"),
)

# Issue #13 set "≤ 70 µs a proxied request" on a machine where a raw ASGI
# hello on uvicorn cost 21 µs a request (its table's first row). The same
# target in that machine's units, which hold on any machine: the gateway at
# most 70 ÷ 21 times the hello app's CPU a request, both measured here.
TARGET_US, ISSUE_HELLO_US = 70.0, 21.0


class BenchError(RuntimeError):
    """Something crashed or would not start: the run cannot be trusted."""


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    path: str
    connections: int
    expect_size: int
    measure_rss: bool = False
    # Paced to the req/s this target reached in that scenario (same run), so a
    # short exchange is compared with a long one at the same rate and the same
    # number of connections: they differ only in how long each exchange lasts.
    paced_like: str | None = None


@dataclass
class LoadResult:
    requests: int = 0
    completed: int = 0  # responses over the whole run, warm-up included (CPU per request)
    errors: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mib_per_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class RssResult:
    before_mib: float
    peak_mib: float
    growth_mib: float
    hwm_before_mib: float
    hwm_after_mib: float


@dataclass
class Row:
    target: str
    scenario: str
    label: str
    connections: int
    load: LoadResult | None = None
    rss: RssResult | None = None
    rate: float | None = None  # req/s the load generator was paced to (None: as fast as answered)
    settle_s: float = 0.0  # time waited for the server to go idle before the row
    failure: str | None = None  # set when the row could not be measured
    # CPU seconds (user + system) the server under test used during the load
    # generator's run, and that divided by the responses it completed.
    cpu_s: float | None = None
    cpu_us_per_request: float | None = None
    # The part of cpu_s spent by threads other than the event loop's: for the
    # gateway, its log writer (the access log rendered and written).
    cpu_threads_s: float | None = None
    cpu_threads_us_per_request: float | None = None
    # A first try whose window counted no response, measured again once
    # (see bench_target): what that try saw.
    empty_first_try: LoadResult | None = None


@dataclass
class Check:
    name: str
    value: float | None
    target: str
    passed: bool | None  # None: could not be computed
    unit: str = "×"
    detail: str = ""  # the operands, from this run

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    big_size: int
    output: Path
    quick: bool
    targets: tuple[str, ...] = TARGETS
    only: tuple[str, ...] = ()  # scenario keys; empty: all
    pairs: int = 3  # interleaved A/B rounds for the two checks that compare close figures
    max_rate: float | None = None  # requests/s cap on every row's load (a smoke run that must not load the machine)

    def scenario(self, key: str) -> Scenario:
        return next(s for s in self.all_scenarios() if s.key == key)

    def all_scenarios(self) -> list[Scenario]:
        return [
            Scenario("small16", "GET 200 B", "/small", 16, SMALL_SIZE),
            Scenario("small64", "GET 200 B", "/small", 64, SMALL_SIZE),
            Scenario("slow256", "GET 50 ms slow", "/slow", 256, SMALL_SIZE),
            Scenario("paced256", "GET 200 B paced", "/small", 256, SMALL_SIZE, paced_like="slow256"),
            Scenario("big16", f"GET {self.big_size / MIB:g} MiB", f"/big?size={self.big_size}", 16,
                     self.big_size, measure_rss=True),
            Scenario("ping64", "GET /ping (py)", "/ping", 64, len(PONG)),
        ]

    def scenarios(self, target: str) -> list[Scenario]:
        """The scenarios ``target`` runs in this run, in table order."""
        return [s for s in self.all_scenarios()
                if s.key in PLAN[target] and (not self.only or s.key in self.only)]


# ---------------------------------------------------------------- CPU pinning

@dataclass(frozen=True)
class Pinning:
    proxy: list[str]   # command prefix for the proxy under test
    helpers: list[str]  # command prefix for the upstream and the load generator
    note: str


def choose_pinning() -> Pinning:
    """Proxy alone on one core; upstream + load generator share another.

    The proxies are single-threaded Python: one core is exactly what one worker
    can use, and giving it a core of its own keeps the load generator and the
    upstream from stealing its cycles (and vice versa), so baseline and gateway
    are compared on equal terms.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning([], [], "no pinning: taskset not found (results are noisier)")
    if len(cpus) < 2:
        return Pinning([], [], f"no pinning: only {len(cpus)} CPU available (results are noisier)")
    proxy_cpu, helper_cpu = cpus[0], cpus[1]
    return Pinning(
        [taskset, "-c", str(proxy_cpu)], [taskset, "-c", str(helper_cpu)],
        f"proxy under test on CPU {proxy_cpu}; upstream + load generator on CPU {helper_cpu}",
    )


def cpu_busy_percent(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat), e.g. other jobs."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 100.0 * (1 - (idle1 - idle0) / total) if total > 0 else None


# ---------------------------------------------------------------- processes

def go_build(src: Path, out: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        raise BenchError("the Go toolchain ('go') is needed to build the bench upstream and load generator")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([go, "build", "-o", str(out), "."], cwd=src, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"go build in {src} failed:\n{proc.stderr}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# uvicorn's own access line (the ping app with --access-log), e.g.
# 'INFO:     127.0.0.1:37526 - "GET /ping HTTP/1.1" 200 OK'
_UVICORN_ACCESS = re.compile(r'INFO: +\S+ - ".*" \d{3}')


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last lines of the server's output, access-log lines left out
        (the gateway writes one per request: they would hide everything else)."""
        try:
            with open(self.log_path, "rb") as f:
                start = max(0, f.seek(0, os.SEEK_END) - (1 << 20))
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        tail = text.splitlines()[1 if start else 0:]  # the first line may be cut
        return [line for line in tail
                if '"logger":"gateway.access"' not in line and not _UVICORN_ACCESS.match(line)][-lines:]


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
          stdout: int | None = None, cwd: Path = ROOT) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout or log, stderr=log,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()  # the child has its own copy
    return proc, log_path


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy: loopback only


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, str]]:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def wait_ready(server: Server, token: str | None, timeout: float = 30.0) -> None:
    """Until GET /small through ``server`` answers 200 from *our* upstream
    (``token``), or, with no token (the ping app), GET /ping answers 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    path = "/small" if token is not None else "/ping"
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"{server.name} exited with {server.proc.returncode} while starting:\n"
                             + "\n".join(server.log_tail()))
        try:
            status, headers = http_get(server.url + path)
            if status == 200 and (token is None or headers.get("x-bench-upstream") == token):
                return
            last = f"HTTP {status}, X-Bench-Upstream={headers.get('x-bench-upstream')!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(f"{server.name} not ready after {timeout:g}s ({last}):\n" + "\n".join(server.log_tail()))


def start_upstream(binary: Path, pinning: Pinning, log_dir: Path, token: str) -> Server:
    proc, log_path = spawn("upstream", pinning.helpers + [str(binary), "-addr", "127.0.0.1:0", "-token", token],
                           log_dir, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        proc.kill()
        raise BenchError(f"upstream did not start: {line!r} " + log_path.read_text(errors="replace"))
    server = Server("upstream", proc, line.removeprefix("listening on "), log_path)
    wait_ready(server, token)
    return server


def proxy_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LEGACY_URL", None)  # would override routes.yaml's legacy.url
    env.pop("GATEWAY_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_yardstick_proxy(name: str, module: str, upstream: str, pinning: Pinning, log_dir: Path, token: str,
                          *extra: str) -> Server:
    """One of the bench's own proxies (``python -m <module> --upstream ...
    --port ...``): the naive baseline, or the floor."""
    port = free_port()
    cmd = pinning.proxy + [sys.executable, "-m", module, "--upstream", upstream, "--port", str(port), *extra]
    proc, log_path = spawn(name, cmd, log_dir, env=proxy_env())
    server = Server(name, proc, f"http://127.0.0.1:{port}", log_path)
    wait_ready(server, token)
    return server


def bench_routes(upstream: str) -> str:
    """The routes.yaml of every gateway the bench tools start: ``/ping`` served
    in process by ``services/ping``, every other path by ``upstream``."""
    return ("# written by tools/bench\n"
            f"legacy:\n  url: {upstream}\n  pool_size: 1024\n"
            "default: go\nroutes:\n  - prefix: /ping\n    to: python\n")


def start_gateway(upstream: str, pinning: Pinning, log_dir: Path, token: str, *,
                  access_log: bool = True, name: str | None = None, tree: Path = ROOT) -> Server:
    """``gateway serve`` as deployed: default settings, so the access log is on
    (one JSON line per request to its stdout, a file here) unless ``access_log``
    is False, with :func:`bench_routes`. ``tree``: the checkout it runs from
    (tools/bench/ab.py starts another commit's too), ``name`` its files'."""
    name = name or (GATEWAY if access_log else GATEWAY_NOLOG)
    routes = log_dir / f"{name}-routes.yaml"
    routes.write_text(bench_routes(upstream))
    port = free_port()
    cmd = pinning.proxy + [sys.executable, "-m", "gateway.cli", "serve", "--config", str(routes),
                           "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                           "--log-level", "warning"] + ([] if access_log else ["--no-access-log"])
    env = proxy_env()
    env.setdefault("JUNJO_SESSION_SECRET", "bench-secret")  # services/ping's legacy middleware wants one
    env["JUNJO_SQLITE_PATH"] = str(log_dir / f"{name}.db")  # not the checkout's data/
    proc, log_path = spawn(name, cmd, log_dir, env=env, cwd=tree)
    server = Server(name, proc, f"http://127.0.0.1:{port}", log_path)
    wait_ready(server, token)
    return server


# The apps the bench serves alone, no upstream behind them (the yardsticks of
# the /ping checks and the issue's machine), and the arguments that start each
# (then ``--port``); tools/bench/instructions.py starts them from here too.
ALONE_APPS: dict[str, list[str]] = {
    PING_APP: ["-m", "tools.bench.ping_app"],
    PING_APP_EDGE: ["-m", "tools.bench.ping_app", "--edge"],
    PING_APP_LOGGED: ["-m", "tools.bench.ping_app", "--access-log"],
    HELLO: ["-m", "tools.bench.hello_app"],
}


def start_app_alone(target: str, pinning: Pinning, log_dir: Path) -> Server:
    """One of ALONE_APPS, ready when GET /ping answers 200."""
    port = free_port()
    cmd = pinning.proxy + [sys.executable, *ALONE_APPS[target], "--port", str(port)]
    env = proxy_env()
    env.setdefault("JUNJO_SESSION_SECRET", "bench-secret")  # services/ping's legacy middleware wants one
    proc, log_path = spawn(target, cmd, log_dir, env=env)
    server = Server(target, proc, f"http://127.0.0.1:{port}", log_path)
    wait_ready(server, None)
    return server


# ---------------------------------------------------------------- measuring

def read_status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _stat_cpu_seconds(path: str) -> float:
    """utime + stime of a /proc ``stat`` file (a process's or one thread's)."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``'s threads other than its main one (the event loop's)."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        if int(task) == pid:
            continue
        try:
            total += _stat_cpu_seconds(f"/proc/{pid}/task/{task}/stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return total


def wait_idle(pid: int, max_wait: float, window: float = 0.25, threshold: float = 0.05) -> float:
    """Wait until ``pid`` uses < ``threshold`` of a CPU; return the seconds waited.

    A proxy can still be working off requests the previous row's load generator
    abandoned when it stopped; starting the next row then would measure that
    backlog instead of the new scenario.
    """
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_wait:
            before = cpu_seconds(pid)
            time.sleep(window)
            if (cpu_seconds(pid) - before) / window < threshold:
                break
    except (OSError, ValueError, IndexError):
        pass
    return time.monotonic() - started


class RssSampler:
    """Samples VmRSS of one process every ``interval`` s while a load runs."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, read_status_kib(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


MIN_REQUESTS_PER_CONNECTION = 4  # under --max-rate


def run_loadgen(binary: Path, pinning: Pinning, url: str, scenario: Scenario, settings: Settings,
                rate: float | None = None) -> LoadResult:
    connections = scenario.connections
    if settings.max_rate:
        rate = min(rate or settings.max_rate, settings.max_rate)
        # Few enough connections that each sends several requests in the
        # window: 256 paced connections at 200 req/s sent one request each,
        # and on a starved machine none of them was answered in time (a
        # clean-clone run: paced256 at 0 requests).
        connections = max(1, min(connections, int(rate * settings.duration / MIN_REQUESTS_PER_CONNECTION)))
    cmd = pinning.helpers + [
        str(binary), "-url", url, "-c", str(connections),
        "-d", f"{settings.duration}s", "-warmup", f"{settings.warmup}s",
        "-expect-size", str(scenario.expect_size),
    ]
    if rate:
        cmd += ["-rate", f"{rate:.1f}"]
    timeout = settings.warmup + settings.duration + 60
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"load generator did not finish within {timeout:g}s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}): {proc.stderr.strip()}")
    return LoadResult.from_json(json.loads(proc.stdout))


def measure(loadgen: Path, pinning: Pinning, server: Server, target: str, scenario: Scenario,
            settings: Settings, rate: float | None = None) -> Row:
    row = Row(target, scenario.key, scenario.label, scenario.connections, rate=rate)
    # --quick proves the harness runs, its numbers mean nothing: no settling.
    row.settle_s = round(wait_idle(server.proc.pid, max_wait=0 if settings.quick else 15), 2)
    url = server.url + scenario.path
    pid = server.proc.pid
    cpu_before = cpu_seconds(pid)
    threads_before = thread_cpu_seconds(pid)
    if not (scenario.measure_rss and target != DIRECT):
        row.load = run_loadgen(loadgen, pinning, url, scenario, settings, rate)
        record_cpu(row, pid, cpu_before, threads_before)
        return row
    before = read_status_kib(pid)
    with RssSampler(pid) as sampler:
        row.load = run_loadgen(loadgen, pinning, url, scenario, settings)
    record_cpu(row, pid, cpu_before, threads_before)
    after = read_status_kib(pid)
    peak = max(sampler.peak_kib, after["VmRSS"])
    if after["VmHWM"] > before["VmHWM"]:  # the kernel saw a new high-water mark during the run
        peak = max(peak, after["VmHWM"])
    row.rss = RssResult(
        before_mib=before["VmRSS"] / 1024, peak_mib=peak / 1024,
        growth_mib=max(0, peak - before["VmRSS"]) / 1024,
        hwm_before_mib=before["VmHWM"] / 1024, hwm_after_mib=after["VmHWM"] / 1024,
    )
    return row


def record_cpu(row: Row, pid: int, cpu_before: float, threads_before: float | None = None) -> None:
    """CPU the server used while the load generator ran, per response it completed.

    Warm-up included on both sides (the load generator counts its warm-up
    responses in ``completed``), so no clock has to line up with its window."""
    try:
        row.cpu_s = round(cpu_seconds(pid) - cpu_before, 3)
        if threads_before is not None:
            row.cpu_threads_s = round(thread_cpu_seconds(pid) - threads_before, 3)
    except (OSError, ValueError, IndexError):
        return
    if row.load is not None and row.load.completed > 0:
        row.cpu_us_per_request = round(row.cpu_s / row.load.completed * 1e6, 1)
        if row.cpu_threads_s is not None:
            row.cpu_threads_us_per_request = round(row.cpu_threads_s / row.load.completed * 1e6, 2)


def bench_target(target: str, server: Server, loadgen: Path, pinning: Pinning,
                 settings: Settings) -> Iterator[Row]:
    done: list[Row] = []
    for scenario in settings.scenarios(target):
        if not server.alive():
            yield Row(target, scenario.key, scenario.label, scenario.connections,
                      failure=f"{server.name} exited with {server.proc.returncode}")
            continue
        rate = None
        if scenario.paced_like:
            # The rate of the long exchanges this one is compared with; without
            # that row, what 256 connections of 50 ms exchanges would reach.
            rate = rps(find(done, target, scenario.paced_like)) or scenario.connections / 0.05
        heading = f"  {target:<8} {scenario.label:<15} c={scenario.connections:<4}"
        print(heading, end=" ", flush=True)
        row = measure(loadgen, pinning, server, target, scenario, settings, rate)
        if window_was_empty(row) and server.alive():
            # A row is worth nothing without a response in its window. Seen
            # on a starved machine (the smoke test beside a cold Go build):
            # 26 responses in a 0.2 s warm-up, then none in the 1 s window.
            print("no response in the window: measuring the row again once", flush=True)
            print(heading, end=" ", flush=True)
            first = row.load
            row = measure(loadgen, pinning, server, target, scenario, settings, rate)
            row.empty_first_try = first
        done.append(row)
        if not server.alive():
            row.failure = f"{server.name} exited with {server.proc.returncode} during the run"
        print(describe_progress(row), flush=True)
        yield row


@dataclass
class PairedRounds:
    """One comparison measured in interleaved rounds (see PAIRED)."""
    name: str
    a: str
    b: str
    scenario: str
    rounds: list[tuple[Row, Row]] = field(default_factory=list)

    def cpu_differences(self) -> list[float]:
        return [a.cpu_us_per_request - b.cpu_us_per_request for a, b in self.rounds
                if a.cpu_us_per_request is not None and b.cpu_us_per_request is not None]

    def loop_thread_differences(self) -> list[float]:
        """A's CPU per request on its event loop's thread (the row's CPU less
        its other threads') less B's, round by round: what the access log
        costs the request path, indirect costs included (what the writer thread
        does to the loop's: GIL hand-overs, cold caches, say)."""
        def loop(row: Row) -> float | None:
            if row.cpu_us_per_request is None or row.cpu_threads_us_per_request is None:
                return None
            return row.cpu_us_per_request - row.cpu_threads_us_per_request
        pairs = [(loop(a), loop(b)) for a, b in self.rounds]
        return [x - y for x, y in pairs if x is not None and y is not None]

    def rps_ratios(self) -> list[float]:
        return [ra / rb for ra, rb in ((rps(a), rps(b)) for a, b in self.rounds) if ra and rb]


def pairs_to_run(settings: Settings) -> list[tuple[str, str, str, str]]:
    """The PAIRED comparisons this run's targets and scenarios allow."""
    if settings.pairs <= 0:
        return []
    return [(name, a, b, key) for name, a, b, key in PAIRED
            if {a, b} <= set(settings.targets) and not (settings.only and key not in settings.only)]


def paired_rounds(upstream: Server, loadgen: Path, pinning: Pinning, log_dir: Path, token: str,
                  settings: Settings, running: dict[str, Server]) -> list[PairedRounds]:
    """The comparisons of pairs_to_run, in ``settings.pairs`` interleaved
    rounds each, on the servers their rows ran on (``running``; a side that
    is not there is started, and stopped after its rounds)."""
    out: list[PairedRounds] = []
    for name, a, b, key in pairs_to_run(settings):
        scenario = settings.scenario(key)
        paired = PairedRounds(name, a, b, key)
        servers: dict[str, Server] = {}
        started_here: list[Server] = []
        try:
            for target in (a, b):
                server = running.get(target)
                if server is None or not server.alive():
                    server = start_target(target, upstream, pinning, log_dir, token)
                    assert server is not None
                    started_here.append(server)
                servers[target] = server
            for i in range(settings.pairs):
                order = (a, b) if i % 2 == 0 else (b, a)
                got: dict[str, Row] = {}
                for target in order:
                    print(f"  round {i + 1}/{settings.pairs} {target:<13} {scenario.label:<15}", end=" ", flush=True)
                    got[target] = measure(loadgen, pinning, servers[target], target, scenario, settings)
                    print(describe_progress(got[target]), flush=True)
                paired.rounds.append((got[a], got[b]))
        finally:
            for server in started_here:
                server.stop()
        out.append(paired)
    return out


def window_was_empty(row: Row) -> bool:
    """The load generator ran, and counted no response in its measured window."""
    return row.failure is None and row.load is not None and row.load.requests == 0


def describe_progress(row: Row) -> str:
    if row.load is None:
        return row.failure or "?"
    text = f"{row.load.rps:10.0f} req/s  p99 {row.load.p99_ms:.1f} ms"
    if row.cpu_us_per_request is not None:
        text += f"  {row.cpu_us_per_request:.1f} µs CPU/req"
    if row.load.errors:
        text += f"  {row.load.errors} ERRORS {row.load.statuses} {row.load.error_samples[:3]}"
    if row.failure:
        text += f"  ({row.failure})"
    if row.settle_s >= 1:
        text += f"  (waited {row.settle_s:.1f}s for the server to go idle first)"
    return text


# ---------------------------------------------------------------- report

def find(rows: list[Row], target: str, scenario: str) -> Row | None:
    return next((r for r in rows if r.target == target and r.scenario == scenario), None)


def rps(row: Row | None) -> float | None:
    return row.load.rps if row and row.load and row.load.rps > 0 else None


def cpu_per_request(row: Row | None) -> float | None:
    return row.cpu_us_per_request if row and row.load and row.load.completed else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def access_handoff_us(n: int = 200_000) -> float:
    """CPU µs the request path spends on its access line, timed in this
    process: the gateway's own ``access_record`` and ``LineWriter.defer``, as
    ``Gateway._done`` calls them, with a writer on /dev/null. Rendering and
    writing the line are the writer thread's, measured from the gateway rows.

    Under the gateway's own GC settings (``_tune_gc``, what ``gateway serve``
    runs with: the loaded heap frozen, a young-generation threshold of 20,000),
    restored afterwards. Under CPython's defaults a collection would run every
    700 allocations over the records queued for the writer, a cost a serving
    gateway does not have: it more than doubled this figure (1.6 against 0.7 µs
    on the 2-core dev VM)."""
    import gc
    from types import SimpleNamespace
    from typing import cast

    from gateway.app import _tune_gc, access_record
    from gateway.context import RequestContext
    from gateway.ops.logs import LineWriter
    from gateway.routing.table import Route
    from gateway.upstream.headers import TrustedProxies

    fd = os.open(os.devnull, os.O_WRONLY)
    thresholds = gc.get_threshold()
    _tune_gc()
    try:
        writer = LineWriter(fd)
        ctx = RequestContext(b"0af7651916cd43dd8448eb211c80319c", b"0af7651916cd43dd8448eb211c80319c")
        ctx.backend, ctx.status = "go", 200
        scope = {"type": "http", "method": "GET", "raw_path": b"/small", "path": "/small",
                 "client": ("127.0.0.1", 50000)}
        route = cast(Route, SimpleNamespace(state="go", service=None))
        trusted = TrustedProxies()  # what routes.yaml without trusted_proxies gives (the common case)

        def render(record: Any) -> str:
            return ""

        started = time.thread_time()
        for _ in range(n):
            writer.defer(render, access_record(ctx, scope, route, "/", 200, 0.001, None, trusted))
        spent = time.thread_time() - started
        writer.flush()
    finally:
        os.close(fd)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return spent / n * 1e6


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _threads_us(row: Row | None) -> float | None:
    return row.cpu_threads_us_per_request if row and row.load and row.load.completed else None


def checks(rows: list[Row], big_size: int = BIG_SIZE, paired: list[PairedRounds] | None = None,
           handoff_us: float | None = None) -> list[Check]:
    """The issue's targets, each from rows of this very run (the two close
    comparisons from the median of their interleaved rounds, when they ran)."""
    out: list[Check] = []
    rounds = {p.name: p for p in paired or () if p.rounds}

    def ratio_check(name: str, a: float | None, b: float | None, target: str, ok: Callable[[float], bool],
                    detail: str, unit: str = "×") -> None:
        value = _ratio(a, b)
        out.append(Check(name, value, target, None if value is None else ok(value), unit,
                         detail.format(a=_fmt(a), b=_fmt(b))))

    def value_check(name: str, value: float | None, target: str, ok: Callable[[float], bool],
                    detail: str = "", unit: str = "µs") -> None:
        out.append(Check(name, value, target, None if value is None else ok(value), unit, detail))

    gw_small_cpu = cpu_per_request(find(rows, GATEWAY, "small64"))
    value_check("200 B GET @64, access log on: gateway CPU per request", gw_small_cpu, f"≤ {TARGET_US:g} µs",
                lambda v: v <= TARGET_US, "gateway CPU s ÷ responses" + _floor_detail(rows, rounds.get("floor")))
    out.append(_hello_check(rows, rounds.get("hello")))
    ratio_check("200 B GET @64: gateway ÷ baseline req/s",
                rps(find(rows, GATEWAY, "small64")), rps(find(rows, BASELINE, "small64")), "≥ 10×",
                lambda v: v >= 10, "{a} ÷ {b} req/s")
    ratio_check("slow GET @256: gateway ÷ direct req/s",
                rps(find(rows, GATEWAY, "slow256")), rps(find(rows, DIRECT, "slow256")), "≥ 0.95×",
                lambda v: v >= 0.95, "{a} ÷ {b} req/s")
    out[-1].detail += _queued_hint(find(rows, GATEWAY, "slow256"), find(rows, DIRECT, "slow256"))
    ratio_check("50 ms GET ÷ 200 B GET, both @256 at the same req/s: gateway CPU/req",
                cpu_per_request(find(rows, GATEWAY, "slow256")), cpu_per_request(find(rows, GATEWAY, "paced256")),
                "≤ 1×", lambda v: v <= 1.0, "{a} ÷ {b} µs")
    out.append(_ping_check("GET /ping @64: gateway ÷ ping app alone req/s", rows, rounds.get("ping"), PING_APP))
    # The same with logging on both sides: the app alone with uvicorn's access
    # log, as uvicorn runs by default (the gateway's is on in both checks).
    out.append(_ping_check("GET /ping @64: gateway ÷ ping app alone with uvicorn's access log req/s "
                           "(both log each request)", rows, rounds.get("ping_logged"), PING_APP_LOGGED))
    # The access log's cost is a few µs in ~100: the difference of two whole
    # rows is noisy here (±10 %). So it is measured in its two parts: the
    # request path's hand-off, timed alone (handoff_us), plus the CPU of the
    # gateway's threads other than the event loop (its log writer) per
    # response, less the same threads' CPU without the access log. The parts
    # miss what the writer costs the event loop's thread indirectly, so the
    # detail also gives, round by round, the whole rows' difference and the
    # loop thread's (README, "The access log's whole cost").
    log_name = "access log: request-path hand-off + writer thread, CPU per request (200 B @64)"
    gw_threads = _threads_us(find(rows, GATEWAY, "small64"))
    nolog_threads = _threads_us(find(rows, GATEWAY_NOLOG, "small64"))
    log_rounds = rounds.get("access_log")
    differences = log_rounds.cpu_differences() if log_rounds else []
    whole = (f"; whole rows with − without, median of {len(differences)} interleaved rounds: "
             + ", ".join(f"{d:.1f}" for d in differences)) if differences else ""
    loop_differences = log_rounds.loop_thread_differences() if log_rounds else []
    if loop_differences:
        whole += ("; the event loop's thread alone, with − without: "
                  + ", ".join(f"{d:.1f}" for d in loop_differences))
    if gw_threads is not None and handoff_us is not None:
        writer = max(0.0, gw_threads - (nolog_threads or 0.0))
        value_check(log_name, handoff_us + writer, "≤ 5 µs", lambda v: v <= 5,
                    f"hand-off {handoff_us:.2f} + writer thread {gw_threads:.2f} − {_fmt(nolog_threads)} µs{whole}")
    else:
        value_check(log_name, _median(differences) if differences else None, "≤ 5 µs", lambda v: v <= 5,
                    whole.lstrip("; "))
    big = find(rows, GATEWAY, "big16")
    growth = big.rss.growth_mib if big and big.rss else None
    value_check(f"{big_size / MIB:g} MiB ×16: gateway peak RSS growth", growth, "≤ 32 MiB",
                lambda v: v <= 32, "", unit="MiB")
    return out


# A 50 ms exchange whose p99 passes this many times the direct row's waited
# in a queue: the gateway's core was saturated, or the machine stalled.
QUEUED_P99 = 4


def _queued_hint(gateway: Row | None, direct: Row | None) -> str:
    """What to do when the slow row's requests queued (the row's req/s then
    says more about this machine's state than about the gateway): a
    re-run of the two slow rows, which take ~20 s."""
    if not (gateway and gateway.load and direct and direct.load and direct.load.p99_ms > 0):
        return ""
    if gateway.load.p99_ms <= QUEUED_P99 * direct.load.p99_ms:
        return ""
    return (f"; the gateway's p99 was {gateway.load.p99_ms:,.0f} ms against direct's "
            f"{direct.load.p99_ms:,.0f} ms: its requests queued (a saturated core or a stalled "
            "machine); re-run the two slow rows: --targets direct,gateway --only slow256,paced256")


def _ping_check(name: str, rows: list[Row], ping_rounds: PairedRounds | None, alone: str) -> Check:
    """The gateway's GET /ping req/s ÷ the app ``alone``'s: the median of the
    interleaved rounds when they ran, else the two rows."""
    ratios = ping_rounds.rps_ratios() if ping_rounds else []
    if ratios:
        ratio = _median(ratios)
        return Check(name, ratio, "≥ 0.9×", ratio >= 0.9, "×",
                     f"median of {len(ratios)} interleaved rounds: " + ", ".join(f"{r:.2f}" for r in ratios))
    a, b = rps(find(rows, GATEWAY, "ping64")), rps(find(rows, alone, "ping64"))
    value = _ratio(a, b)
    return Check(name, value, "≥ 0.9×", None if value is None else value >= 0.9, "×", f"{_fmt(a)} ÷ {_fmt(b)} req/s")


def _cpu_ratios(rounds: PairedRounds | None) -> list[float]:
    """Side A's CPU per request ÷ side B's, round by round."""
    return [a.cpu_us_per_request / b.cpu_us_per_request for a, b in rounds.rounds
            if a.cpu_us_per_request and b.cpu_us_per_request] if rounds else []


def _hello_check(rows: list[Row], hello_rounds: PairedRounds | None) -> Check:
    """The 70 µs target in the units of the machine it was set on (see
    ISSUE_HELLO_US): from the interleaved rounds when they ran, else the rows."""
    name = "200 B GET @64: gateway ÷ raw ASGI hello CPU/req (the 70 µs target in the issue's machine's units)"
    limit = TARGET_US / ISSUE_HELLO_US
    target = f"≤ {limit:.2f}× = {TARGET_US:g} ÷ {ISSUE_HELLO_US:g} µs"
    ratios = _cpu_ratios(hello_rounds)
    value: float | None
    if ratios:
        value = _median(ratios)
        detail = f"median of {len(ratios)} interleaved rounds: " + ", ".join(f"{r:.2f}" for r in ratios)
    else:
        gateway, hello = cpu_per_request(find(rows, GATEWAY, "small64")), cpu_per_request(find(rows, HELLO, "small64"))
        value = _ratio(gateway, hello)
        detail = f"{_fmt(gateway)} ÷ {_fmt(hello)} µs"
    if value is not None:
        detail += f"; at the issue's {ISSUE_HELLO_US:g} µs hello, {value * ISSUE_HELLO_US:.1f} µs"
    return Check(name, value, target, None if value is None else value <= limit, "×", detail)


def _floor_detail(rows: list[Row], floor_rounds: PairedRounds | None) -> str:
    """The same request through the floor (tools/bench/floor_proxy.py): what
    no Python proxy can spend less than here, and the gateway's multiple of it,
    from the interleaved rounds when they ran (this VM's speed moves both alike)."""
    ratios = _cpu_ratios(floor_rounds)
    if ratios:
        return (f"; a bare callback relay (floor): gateway ÷ floor CPU/req, median of {len(ratios)} interleaved "
                f"rounds: {_median(ratios):.2f}× (" + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    floor = cpu_per_request(find(rows, FLOOR, "small64"))
    return f"; a bare callback relay (floor): {floor:.1f} µs" if floor is not None else ""


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def format_table(rows: list[Row]) -> str:
    header = ("target", "scenario", "conns", "req/s", "p50 ms", "p99 ms", "MiB/s", "CPU µs/req", "errors",
              "RSS +MiB")
    lines = [header]
    for r in rows:
        if r.load is None:
            lines.append((r.target, r.label, str(r.connections), "-", "-", "-", "-", "-", "-", r.failure or "-"))
            continue
        errors = str(r.load.errors) + ("!" if r.failure else "")
        rss = f"{r.rss.growth_mib:.1f}" if r.rss else "-"
        cpu = f"{r.cpu_us_per_request:.1f}" if r.cpu_us_per_request is not None else "-"
        lines.append((r.target, r.label, str(r.connections), f"{r.load.rps:.0f}", f"{r.load.p50_ms:.2f}",
                      f"{r.load.p99_ms:.2f}", f"{r.load.mib_per_s:.1f}", cpu, errors, rss))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8, 9}
    out = []
    for i, line in enumerate(lines):
        cells = [c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_checks(results: list[Check]) -> str:
    width = max((len(c.name) for c in results), default=0)
    out = []
    for c in results:
        if c.value is None:
            value = "n/a"
        elif c.unit == "×":
            value = f"{c.value:.2f}×"
        else:
            value = f"{c.value:.1f} {c.unit}"
        detail = f"  [{c.detail}]" if c.detail else ""
        out.append(f"  {c.verdict:<4}  {c.name:<{width}}  {value:>9}   (target {c.target}){detail}")
    return "\n".join(out)


def problems_report(rows: list[Row], logs: dict[str, list[str]]) -> str:
    lines = []
    for r in rows:
        if r.failure or (r.load and r.load.errors):
            detail = f"{r.load.errors} errors, statuses {r.load.statuses}, e.g. {r.load.error_samples[:5]}" \
                if r.load else ""
            lines.append(f"  {r.target} {r.label} c={r.connections}: {r.failure or ''} {detail}".rstrip())
    for name, tail in logs.items():
        if tail:
            lines.append(f"  last lines of {name}'s stderr:")
            lines.extend(f"    {line}" for line in tail)
    return "\n".join(lines)


def write_json(path: Path, settings: Settings, pinning: Pinning, rows: list[Row], results: list[Check],
               logs: dict[str, list[str]], busy_before: dict[str, float | None],
               load_start: list[float] | None = None, paired: list[PairedRounds] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": settings.quick, "duration_s": settings.duration, "warmup_s": settings.warmup,
            "pinning": pinning.note, "cpus": os.cpu_count(), "python": platform.python_version(),
            "git": git_rev(), "cpu_busy_percent_before": busy_before,
            "loadavg_start": load_start, "loadavg_end": loadavg(),
            "targets": list(settings.targets), "only": list(settings.only), "pairs": settings.pairs,
        },
        "rows": [asdict(r) for r in rows],
        "paired": [{"name": p.name, "a": p.a, "b": p.b, "scenario": p.scenario,
                    "rounds": [[asdict(a), asdict(b)] for a, b in p.rounds]} for p in paired or ()],
        "targets": [asdict(c) | {"verdict": c.verdict} for c in results],
        "server_logs": logs,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages, to name how busy the machine was."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against the upstream and a naive proxy.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run to prove the harness works (numbers meaningless)")
    parser.add_argument("--duration", type=float, help="seconds measured per row (default 5, quick 0.5)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per row (default 1.5, quick 0.2)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "latest.json")
    parser.add_argument("--targets", type=_names(TARGETS), default=TARGETS,
                        help=f"comma-separated subset of {','.join(TARGETS)} (default: all)")
    parser.add_argument("--only", type=_names(tuple(k for keys in PLAN.values() for k in keys)), default=(),
                        help="comma-separated scenarios to run, e.g. small64 (default: all)")
    parser.add_argument("--pairs", type=int,
                        help="interleaved rounds of the access-log and /ping comparisons (default 3, quick 1; "
                             "0: compare the single rows only)")
    parser.add_argument("--max-rate", type=float,
                        help="cap every row's load at this many requests/s, on at most rate x duration / 4 connections "
                             "(for a smoke run beside other work; the figures then measure nothing)")
    args = parser.parse_args(argv)
    return Settings(
        duration=args.duration or (0.5 if args.quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (0.2 if args.quick else 1.5),
        big_size=256 * 1024 if args.quick else BIG_SIZE,
        output=args.output.resolve(),
        quick=args.quick,
        targets=args.targets,
        only=args.only,
        pairs=args.pairs if args.pairs is not None else (1 if args.quick else 3),
        max_rate=args.max_rate,
    )


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in allowed]
        if unknown:
            expected = ", ".join(dict.fromkeys(allowed))
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)}; expected some of {expected}")
        return names
    return parse


def start_target(target: str, upstream: Server, pinning: Pinning, log_dir: Path, token: str) -> Server | None:
    if target == DIRECT:
        return None  # reuse the upstream itself
    if target == BASELINE:
        return start_yardstick_proxy(BASELINE, "tools.bench.baseline_proxy", upstream.url, pinning, log_dir, token,
                                     "--pool-size", "1024")
    if target == FLOOR:
        return start_yardstick_proxy(FLOOR, "tools.bench.floor_proxy", upstream.url, pinning, log_dir, token)
    if target in ALONE_APPS:
        return start_app_alone(target, pinning, log_dir)
    return start_gateway(upstream.url, pinning, log_dir, token, access_log=target == GATEWAY)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    load_start = loadavg()
    # --quick proves the harness runs (the test suite's smoke test, on a machine
    # the rest of the suite keeps busy): pinned to one core each, the servers
    # could not move off a core crowded by other processes, and a row
    # sometimes closed before they answered anything.
    pinning = Pinning([], [], "no pinning: --quick") if settings.quick else choose_pinning()
    print(f"building Go upstream and load generator into {BUILD} ...", flush=True)
    upstream_bin = go_build(BENCH / "upstream", BUILD / "bench-upstream")
    loadgen_bin = go_build(BENCH / "loadgen", BUILD / "bench-loadgen")
    print(f"pinning: {pinning.note}; load average at the start: {', '.join(f'{v:.2f}' for v in load_start or [])}")
    print(f"each row: {settings.warmup:g}s warm-up + {settings.duration:g}s measured"
          + ("  [--quick: numbers are meaningless]" if settings.quick else ""), flush=True)

    token = f"bench-{os.getpid()}"
    rows: list[Row] = []
    logs: dict[str, list[str]] = {}
    busy_before: dict[str, float | None] = {}
    crashed = False
    paired: list[PairedRounds] = []
    # The servers the interleaved rounds need stay up after their rows, so
    # each starts once (a start is ~1 CPU-s and seconds of settling). Idle
    # meanwhile, they cost the other targets' rows nothing measurable.
    keep = {t for _, a, b, _ in pairs_to_run(settings) for t in (a, b)}
    running: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        log_dir = Path(tmp)
        upstream = start_upstream(upstream_bin, pinning, log_dir, token)
        print(f"upstream: {upstream.url} (pid {upstream.proc.pid})", flush=True)
        try:
            for target in settings.targets:
                if not settings.scenarios(target):
                    continue
                busy = cpu_busy_percent()
                busy_before[target] = busy
                if busy is not None and busy > BUSY_WARN_PERCENT:
                    print(f"  WARNING: {busy:.0f}% of the CPUs were busy before the {target} rows "
                          "(other processes): expect low, noisy numbers", flush=True)
                server: Server | None = None
                try:
                    server = start_target(target, upstream, pinning, log_dir, token)
                    rows.extend(bench_target(target, server or upstream, loadgen_bin, pinning, settings))
                except BenchError as exc:
                    print(f"\n{target}: {exc}", file=sys.stderr)
                    rows.extend(Row(target, s.key, s.label, s.connections, failure=str(exc).splitlines()[0])
                                for s in settings.scenarios(target) if find(rows, target, s.key) is None)
                finally:
                    if server is not None:
                        if target in keep and server.alive():
                            running[target] = server
                        else:
                            server.stop()
                            logs[target] = server.log_tail(30)
                crashed |= any(r.failure for r in rows if r.target == target)
            if pairs_to_run(settings) and not crashed:
                print("interleaved rounds (the access log's cost, /ping against the app alone, "
                      "the gateway against the floor and the hello app):", flush=True)
                try:
                    paired = paired_rounds(upstream, loadgen_bin, pinning, log_dir, token, settings, running)
                except BenchError as exc:
                    print(f"\ninterleaved rounds: {exc}", file=sys.stderr)
                    crashed = True
            if not upstream.alive():
                crashed = True
                print(f"upstream exited with {upstream.proc.returncode}", file=sys.stderr)
        finally:
            for target, server in running.items():
                server.stop()
                logs[target] = server.log_tail(30)
            upstream.stop()
            logs["upstream"] = upstream.log_tail(30)

    handoff = access_handoff_us(20_000 if settings.quick else 200_000) if GATEWAY in settings.targets else None
    results = checks(rows, settings.big_size, paired, handoff)
    print()
    print(format_table(rows))
    for p in paired:
        print(f"\ninterleaved rounds, {p.name} ({p.a} vs {p.b}, {p.scenario}):")
        print(format_table([row for pair in p.rounds for row in pair]))
    print()
    print("targets (informational):")
    print(format_checks(results))
    problems = problems_report(rows, {k: v for k, v in logs.items() if v})
    if problems:
        print("\nproblems / server output:")
        print(problems)
    noisy = {t: b for t, b in busy_before.items() if b is not None and b > BUSY_WARN_PERCENT}
    if noisy:
        print("\nWARNING: the machine was not idle (CPU busy before rows: "
              + ", ".join(f"{t} {b:.0f}%" for t, b in noisy.items()) + "); re-run on a quiet machine.")
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in loadavg() or [])}")
    write_json(settings.output, settings, pinning, rows, results, logs, busy_before, load_start, paired)
    print(f"\nresults: {settings.output}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
