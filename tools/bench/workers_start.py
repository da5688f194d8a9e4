"""`gateway serve --workers N` started both ways, side by side: workers forked
from the gateway (the default) against spawned fresh interpreters
(``GATEWAY_WORKER_START=spawn``, uvicorn's own way).

    python -m tools.bench.workers_start [--workers 4] [--rounds 4]

Each round starts one gateway each way, in turn, on a routes.yaml that sends
everything to Go (nothing listens there: the workers only start). It times
the start until every worker answers ``/_gateway/health`` (asked 40 times in a
row on new connections, which the kernel spreads over the workers), waits a
second, then reads from ``/proc`` the CPU each worker process has used and the
workers' memory (PSS: shared pages counted once across them), and stops the
gateway. Prints the medians of each way and their ratio; the README's
"Running it for real" quotes it.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import children
from tests.support.standin import free_port
from tools.bench.run import cpu_seconds

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Start:
    ready_s: float
    worker_cpu_s: float  # the median worker's
    pss_mib: float  # all workers together


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _workers(pid: int) -> list[int]:
    # multiprocessing's resource tracker (spawn only) is no worker
    return [child for child, argv in children(pid) if not any(b"resource_tracker" in a for a in argv)]


def start_once(how: str, workers: int, home: Path) -> Start:
    routes = home / "routes.yaml"
    routes.write_text("legacy:\n  url: http://127.0.0.1:9\ndefault: go\nroutes: []\n")
    port = free_port()
    env = {**os.environ, "GATEWAY_WORKER_START": how, "JUNJO_SESSION_SECRET": "bench",
           "JUNJO_SQLITE_PATH": str(home / f"{how}.db"), "PYTHONDONTWRITEBYTECODE": ""}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(routes),
                             "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while True:
            try:
                for _ in range(40):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_gateway/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"gateway ({how}) not ready in 60 s") from None
                time.sleep(0.02)
        ready = time.monotonic() - t0
        time.sleep(1.0)
        kids = _workers(proc.pid)
        if len(kids) != workers:
            raise RuntimeError(f"expected {workers} workers, found {len(kids)}")
        return Start(ready, statistics.median(cpu_seconds(k) for k in kids), sum(_pss_kib(k) for k in kids) / 1024)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    results: dict[str, list[Start]] = {"fork": [], "spawn": []}
    with tempfile.TemporaryDirectory(prefix="workers-start-") as tmp:
        for i in range(args.rounds):
            for how in (("fork", "spawn") if i % 2 == 0 else ("spawn", "fork")):
                results[how].append(start_once(how, args.workers, Path(tmp)))
    print(f"gateway serve --workers {args.workers}, medians of {args.rounds} interleaved rounds:")
    medians = {}
    for how, starts in results.items():
        medians[how] = (statistics.median(s.ready_s for s in starts), statistics.median(s.worker_cpu_s for s in starts),
                        statistics.median(s.pss_mib for s in starts))
        ready, cpu, pss = medians[how]
        print(f"  {how:5}  ready in {ready:.2f} s   CPU per worker {cpu:.2f} s   workers' PSS {pss:.0f} MiB")
    (fr, fc, fp), (sr, sc, sp) = medians["fork"], medians["spawn"]
    print(f"  fork ÷ spawn: ready {fr / sr:.2f}×, CPU per worker {fc / sc:.2f}×, PSS {fp / sp:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
