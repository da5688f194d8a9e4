"""Instructions a request, counted by valgrind: per-request cost without the noise.

On a shared 2-core VM, CPU time per request moves ±20 % from one run to the
next, more than a change on the request path is worth; the number of
instructions a server executes per request moves ±1 %. So this runs each
server under ``valgrind --tool=callgrind`` with instrumentation off, warms it up
with the bench's load generator, switches instrumentation on
(``callgrind_control -i on``) for a window of load, off again, and divides the
instructions counted (every thread of the server: the event loop and the log
writer alike; not the kernel's side of its system calls) by the requests
answered in the window.

It complements ``make bench``: instructions are not time (cache misses and
system calls are not in them) but they compare two versions of the code
exactly. ``--rev`` runs the gateway of another commit too (in a temporary git
worktree), and ``ping-app`` / ``ping-app-edge`` are the yardsticks of
``make bench``'s ``/ping`` check (tools/bench/ping_app.py).

    python -m tools.bench.instructions                       # gateway: GET /small and GET /ping
    python -m tools.bench.instructions --rev HEAD~3          # the same for HEAD~3, side by side
    python -m tools.bench.instructions --targets gateway,ping-app,ping-app-edge --paths /ping
    python -m tools.bench.instructions --targets gateway,floor,ping-app   # make bench's yardsticks

``floor`` is make bench's bare callback relay (tools/bench/floor_proxy.py),
proxied paths only. With the gateway beside it (and the ping app), the end
of the output gives the two ratios ``make bench`` times against a yardstick,
in instructions: the same figures without the machine's noise.

Needs valgrind (Debian: ``apt-get install valgrind``). Each server runs ~50×
slower under it, so a row takes ~40 s; the figures are per request all the same.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.bench.run import (
    ALONE_APPS,
    BUILD,
    ROOT,
    BenchError,
    Pinning,
    bench_routes,
    free_port,
    go_build,
    http_get,
    start_upstream,
)

GATEWAY, PING_APP, PING_APP_EDGE, FLOOR = "gateway", "ping-app", "ping-app-edge", "floor"
TARGETS = (GATEWAY, PING_APP, PING_APP_EDGE, FLOOR)
PING_ONLY = (PING_APP, PING_APP_EDGE)  # they serve /ping alone
PROXY_ONLY = (FLOOR,)  # it relays everything: /ping is not its to serve


@dataclass
class Row:
    target: str  # "gateway", "gateway@<rev>", "ping-app", "ping-app-edge", "floor"
    path: str
    instructions: int
    requests: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests if self.requests else float("nan")


def callgrind_total(path: Path) -> int:
    """The instructions (``Ir``) a callgrind output file counts in all."""
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
    return total


def format_rows(rows: list[Row]) -> str:
    """A table; for each path, each row's ratio to the first row of that path."""
    first: dict[str, float] = {}
    lines = [f"{'target':<24} {'path':<8} {'requests':>9} {'instructions/request':>21} {'ratio':>6}"]
    for row in rows:
        base = first.setdefault(row.path, row.per_request)
        lines.append(f"{row.target:<24} {row.path:<8} {row.requests:>9} {row.per_request:>21,.0f} "
                     f"{row.per_request / base:>6.3f}")
    return "\n".join(lines)


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """The tree of ``rev`` in a temporary git worktree (removed after)."""
    where = Path(tempfile.mkdtemp(prefix="instructions-"))
    proc = subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"git worktree add {rev}: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def yardsticks(rows: list[Row]) -> list[str]:
    """The two ratios ``make bench`` times against a yardstick, in instructions
    (this tree's rows): the gateway's proxied ``GET /small`` as a multiple of
    the floor's, and ``services/ping`` alone as a fraction of the gateway's
    ``GET /ping`` (the check asks ≥ 0.9×). Not time: see the module docstring."""
    per = {(row.target, row.path): row.per_request for row in rows}
    out = []
    gateway, floor = per.get((GATEWAY, "/small")), per.get((FLOOR, "/small"))
    if gateway and floor:
        out.append(f"GET /small: gateway ÷ floor = {gateway / floor:.2f}× in instructions "
                   f"({gateway:,.0f} ÷ {floor:,.0f}; user space only: the kernel's side of the four "
                   "system calls both make is not in it)")
    gateway, alone = per.get((GATEWAY, "/ping")), per.get((PING_APP, "/ping"))
    if gateway and alone:
        out.append(f"GET /ping: ping app alone ÷ gateway = {alone / gateway:.2f}× in instructions "
                   f"({alone:,.0f} ÷ {gateway:,.0f}; the /ping check asks ≥ 0.9× in req/s)")
    return out


def _server_command(target: str, port: int, routes: Path, upstream: str) -> list[str]:
    if target == GATEWAY:
        return ["-m", "gateway.cli", "serve", "--config", str(routes), "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--log-level", "warning"]
    if target == FLOOR:
        return ["-m", "tools.bench.floor_proxy", "--upstream", upstream, "--port", str(port)]
    return [*ALONE_APPS[target], "--port", str(port)]


def _control(pid: int, *args: str) -> None:
    proc = subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or "OK" not in proc.stdout:
        raise BenchError(f"callgrind_control {' '.join(args)} {pid}: {proc.stdout.strip()} {proc.stderr.strip()}")


def measure(target: str, tree: Path, label: str, paths: list[str], upstream: str, loadgen: Path,
            seconds: float, conns: int, workdir: Path) -> list[Row]:
    """One server of ``tree`` under callgrind; a row per path."""
    port = free_port()
    routes = workdir / f"{label}-routes.yaml"
    routes.write_text(bench_routes(upstream))
    env = dict(os.environ, PYTHONUNBUFFERED="1", JUNJO_SQLITE_PATH=str(workdir / f"{label}.db"))
    env.setdefault("JUNJO_SESSION_SECRET", "bench-secret")
    env.pop("LEGACY_URL", None)
    env.pop("GATEWAY_CONFIG", None)
    out_dir = workdir / label
    out_dir.mkdir()
    log = open(workdir / f"{label}.log", "wb")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/callgrind.%p",
         sys.executable, *_server_command(target, port, routes, upstream)],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    rows: list[Row] = []
    try:
        deadline = time.monotonic() + 300
        ready = "/small" if target in PROXY_ONLY else "/ping"
        while True:  # valgrind makes the start slow
            if server.poll() is not None:
                raise BenchError(f"{label} exited with {server.returncode}: see {workdir / (label + '.log')}")
            try:
                if http_get(f"http://127.0.0.1:{port}{ready}", timeout=10)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{label} did not answer GET {ready} within 300 s under valgrind")
            time.sleep(0.5)
        for path in paths:
            url = f"http://127.0.0.1:{port}{path}"
            load = [str(loadgen), "-url", url, "-c", str(conns), "-warmup", "0s"]
            subprocess.run(load + ["-d", "3s"], capture_output=True, timeout=120)  # warm: pool, caches
            before = callgrind_dump(server.pid, out_dir)
            _control(server.pid, "-i", "on")
            proc = subprocess.run(load + ["-d", f"{seconds}s"], capture_output=True, text=True, timeout=seconds + 120)
            _control(server.pid, "-i", "off")
            after = callgrind_dump(server.pid, out_dir)
            if proc.returncode != 0:
                raise BenchError(f"load generator on {url}: {proc.stderr.strip()}")
            result = json.loads(proc.stdout)
            bad = {k: v for k, v in result["statuses"].items() if k != "200"}
            if bad:
                raise BenchError(f"{label} {path}: statuses other than 200: {bad}")
            rows.append(Row(label, path, after - before, result["completed"]))
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return rows


def callgrind_dump(pid: int, out_dir: Path) -> int:
    """Dump the counters now; the instructions counted since the start, in all dumps so far."""
    _control(pid, "-d")
    return sum(callgrind_total(f) for f in out_dir.glob("callgrind.*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=GATEWAY, help=f"comma-separated, of {','.join(TARGETS)}")
    parser.add_argument("--paths", default="/small,/ping", help="comma-separated; the ping apps serve /ping only")
    parser.add_argument("--rev", action="append", default=[], help="also the gateway of this git revision")
    parser.add_argument("--seconds", type=float, default=8.0, help="load window counted, per path")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--optional", action="store_true",
                        help="without valgrind, say so and exit 0 (make bench: a machine may lack it)")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if unknown := sorted(set(targets) - set(TARGETS)):
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    paths = [p for p in args.paths.split(",") if p]
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"instructions: needs {' and '.join(missing)} (Debian: apt-get install valgrind)"
              + ("; skipped" if args.optional else ""), file=sys.stderr)
        return 0 if args.optional else 2
    try:
        upstream_bin = go_build(ROOT / "tools/bench/upstream", BUILD / "bench-upstream")
        loadgen = go_build(ROOT / "tools/bench/loadgen", BUILD / "bench-loadgen")
        with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
            workdir = Path(tmp)
            upstream = start_upstream(upstream_bin, Pinning([], [], "none"), workdir, token="instructions")
            rows: list[Row] = []
            try:
                for target in targets:
                    wanted = ([p for p in paths if p == "/ping"] if target in PING_ONLY
                              else [p for p in paths if p != "/ping"] if target in PROXY_ONLY else paths)
                    rows += measure(target, ROOT, target, wanted, upstream.url, loadgen, args.seconds,
                                    args.connections, workdir)
                for rev in args.rev:
                    with worktree(rev) as tree:
                        rows += measure(GATEWAY, tree, f"gateway@{rev}", paths, upstream.url, loadgen,
                                        args.seconds, args.connections, workdir)
            finally:
                upstream.stop()
    except BenchError as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 1
    print(format_rows(rows))
    for line in yardsticks(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
