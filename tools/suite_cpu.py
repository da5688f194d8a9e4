"""Where a test run's CPU goes, by kind of process: pytest workers, forked
gateways, stand-ins, PostgreSQL, Chromium...

    python -m tools.suite_cpu -- make test-py-parallel
    python -m tools.suite_cpu -- .venv/bin/python -m pytest -q -n 6 tests/wire

The suite forks and spawns hundreds of processes, and many are not waited
for by a parent in the test process's tree (a fork server's children, a
daemonised PostgreSQL), so ``time`` undercounts them: on the 2-core dev VM it
reported 122 CPU-s for a run this script saw use 200. This samples every
process's CPU from ``/proc`` every 0.1 s while the command runs (processes
that were there before it are left out) and prints the total, the average
number of busy cores and a table by kind. A process that lives less than one
sample interval may be missed: the figures are a floor.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL = 0.1


@dataclass
class Seen:
    ppid: int
    cmdline: str
    comm: str
    cpu: float  # seconds, the last reading


def _read(pid: str) -> tuple[tuple[int, int], Seen] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:  # gone meanwhile
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    # (pid, start time) names one process even when the pid is reused.
    key = (int(pid), int(fields[19]))
    return key, Seen(int(fields[1]), cmdline, comm, (int(fields[11]) + int(fields[12])) / TICKS)


def _snapshot() -> dict[tuple[int, int], Seen]:
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (read := _read(pid)) is not None:
            out[read[0]] = read[1]
    return out


def kind(seen: Seen, parents: dict[int, Seen]) -> str:
    cmd, comm = seen.cmdline, seen.comm
    # The binaries first: their arguments name test directories (pytest-of-…).
    if "legacy-standin" in cmd.split(" ", 1)[0] or comm == "legacy-standin":
        return "Go stand-in"
    if comm.startswith(("postgres", "initdb", "pg_ctl")):
        return "PostgreSQL"
    if "chrom" in comm or "/chromium" in cmd.split(" ", 1)[0]:
        return "Chromium"
    if "bench-" in comm or "tools.bench" in cmd:
        return "bench (smoke runs)"
    if comm in ("go", "compile", "link", "vet", "cgo", "asm"):
        return "go build / go test"
    if comm in ("mypy", "ruff") or " -m mypy" in cmd or "/mypy" in cmd or "/ruff" in cmd:
        return "lint (ruff, mypy)"
    parent = parents.get(seen.ppid)
    if "tests.support.forkserver" in cmd:
        forked = parent is not None and "tests.support.forkserver" in parent.cmdline
        return "gateway, forked from the fork server" if forked else "fork server"
    if "multiprocessing.spawn" in cmd:  # GATEWAY_WORKER_START=spawn (workers are forked by default)
        return "gateway worker process (--workers, spawned)"
    if "gateway.cli" in cmd or cmd.split(" ", 1)[0].endswith("/gateway"):
        return "gateway or its CLI, fresh interpreter"
    if "sys.stdin.readline()" in cmd:  # how xdist (execnet) starts a worker
        return "pytest workers (tests' own code, collection)"
    if " -m pytest" in cmd:
        return "pytest controller"
    return f"other ({comm})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"] or ["make", "test-py-parallel"]
    before = set(_snapshot())
    seen: dict[tuple[int, int], Seen] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, now in _snapshot().items():
                if key not in before:
                    old = seen.get(key)
                    if old is not None and old.cmdline and not now.cmdline:
                        now.cmdline = old.cmdline  # read empty while exiting
                    seen[key] = now  # the latest reading: CPU only grows
            done.wait(INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    code = subprocess.call(command)
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    by_pid = {key[0]: s for key, s in seen.items()}
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for s in seen.values():
        row = totals[kind(s, by_pid)]
        row[0] += s.cpu
        row[1] += 1
    total = sum(row[0] for row in totals.values())
    print(f"\n{' '.join(command)}: exit {code}, {wall:.1f} s wall, {total:.1f} CPU-s seen in "
          f"{len(seen)} processes = {total / wall:.2f} of {os.cpu_count()} cores busy on average")
    for name, (cpu, count) in sorted(totals.items(), key=lambda item: -item[1][0]):
        print(f"  {cpu:7.1f} CPU-s  {100 * cpu / total if total else 0:5.1f} %  {int(count):4d} processes  {name}")
    return code


if __name__ == "__main__":
    sys.exit(main())
