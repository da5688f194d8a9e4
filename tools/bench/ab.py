"""This tree's gateway against another commit's, side by side: CPU µs a request in interleaved rounds.

``make bench`` measures one gateway against fixed yardsticks; on a shared VM
its absolute figures move ±20 % from one run to the next, more than most
changes to the request path are worth. This runs two gateways at once — this
checkout's and ``--rev``'s, from a temporary git worktree — both pinned to the
same core (the upstream and the load generator on the other, as
``make bench`` pins), and loads them in turns, A B then B A, so a drift in the
machine's speed falls on both. Each turn is one load-generator window per
path; the server's CPU (all its threads, from ``/proc``) over the responses it
completed is its figure, and the verdict is the ratio of the medians.

    python -m tools.bench.ab --rev 692fdad                       # GET /small and GET /ping, 5 rounds
    python -m tools.bench.ab --rev HEAD~1 --paths /small --rounds 9
    python -m tools.bench.ab --rev HEAD~1 --rate 2500            # paced instead of saturating

tools/bench/instructions.py counts instructions instead: exact, but not time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.bench.instructions import worktree
from tools.bench.run import (
    BUILD,
    ROOT,
    BenchError,
    Server,
    choose_pinning,
    cpu_seconds,
    go_build,
    start_gateway,
    start_upstream,
)


@dataclass
class Side:
    name: str  # "this tree" or the revision
    samples: dict[str, list[float]] = field(default_factory=dict)  # path -> CPU µs a request, a round each

    def median(self, path: str) -> float:
        return statistics.median(self.samples[path])


def format_result(a: Side, b: Side, paths: list[str]) -> str:
    """Per path: each side's median and rounds, and b ÷ a."""
    lines = []
    for path in paths:
        ma, mb = a.median(path), b.median(path)
        lines.append(f"{path}: {a.name} {ma:.1f} µs/req {[round(x, 1) for x in a.samples[path]]}, "
                     f"{b.name} {mb:.1f} µs/req {[round(x, 1) for x in b.samples[path]]}: "
                     f"{b.name} ÷ {a.name} = {mb / ma:.3f}")
    return "\n".join(lines)


def turn(server: Server, path: str, loadgen: Path, helpers: list[str], seconds: float, conns: int,
         rate: float | None) -> float:
    """One load window on ``server``: its CPU µs per response completed."""
    before = cpu_seconds(server.proc.pid)
    cmd = helpers + [str(loadgen), "-url", server.url + path, "-c", str(conns), "-d", f"{seconds}s",
                     "-warmup", "0s"] + (["-rate", str(rate)] if rate else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    time.sleep(0.3)  # the last responses' bookkeeping (the access log's writer) lands in this turn
    spent = cpu_seconds(server.proc.pid) - before
    if proc.returncode != 0:
        raise BenchError(f"load generator on {server.name} {path}: {proc.stderr.strip()}")
    result = json.loads(proc.stdout)
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    if bad or not result["completed"]:
        raise BenchError(f"{server.name} {path}: {result['completed']} responses, statuses other than 200: {bad}")
    return spent / result["completed"] * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the other side: a git revision (tag, branch, commit)")
    parser.add_argument("--paths", default="/small,/ping")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="load window a turn")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=None, help="pace the load (req/s); default: saturate")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    pinning = choose_pinning()
    print(f"pinning: {pinning.note}", flush=True)
    try:
        upstream_bin = go_build(ROOT / "tools/bench/upstream", BUILD / "bench-upstream")
        loadgen = go_build(ROOT / "tools/bench/loadgen", BUILD / "bench-loadgen")
        with tempfile.TemporaryDirectory(prefix="ab-") as tmp, worktree(args.rev) as other:
            workdir = Path(tmp)
            token = os.urandom(4).hex()
            upstream = start_upstream(upstream_bin, pinning, workdir, token)
            a, b = Side(args.rev), Side("this tree")
            servers: list[Server] = []
            try:
                servers = [start_gateway(upstream.url, pinning, workdir, token, name="a", tree=other),
                           start_gateway(upstream.url, pinning, workdir, token, name="b")]
                for server in servers:  # warm: pools, caches, the first requests' imports
                    for path in paths:
                        turn(server, path, loadgen, pinning.helpers, 1.0, args.connections, args.rate)
                for i in range(args.rounds):
                    order = [(a, servers[0]), (b, servers[1])]
                    for side, server in (order if i % 2 == 0 else order[::-1]):
                        for path in paths:
                            figure = turn(server, path, loadgen, pinning.helpers, args.seconds, args.connections,
                                          args.rate)
                            side.samples.setdefault(path, []).append(figure)
                            print(f"round {i + 1}/{args.rounds} {side.name:>12} {path}: {figure:.1f} µs/req",
                                  flush=True)
            finally:
                for server in servers:
                    server.stop()
                upstream.stop()
    except BenchError as exc:
        print(f"ab: {exc}", file=sys.stderr)
        return 1
    print(format_result(a, b, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
