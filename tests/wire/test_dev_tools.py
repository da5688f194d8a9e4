"""The measuring scripts the README quotes: each runs end to end and prints its figures."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_gateway_start_measures_both_ways_of_starting_a_gateway() -> None:
    """tools/bench/gateway_start.py, the README's figure for the fork server: one round."""
    out = run("-m", "tools.bench.gateway_start", "--rounds", "1")
    forked = re.search(r"forked from the fork server +([0-9.]+)", out)
    fresh = re.search(r"fresh interpreter +([0-9.]+)", out)
    assert forked and fresh, out
    assert float(forked[1]) > 0 and float(fresh[1]) > 0, out


def test_workers_start_measures_forked_and_spawned_workers() -> None:
    """tools/bench/workers_start.py, the README's figure for forked workers: one
    round of two workers each way, GATEWAY_WORKER_START=spawn included (the tool
    fails unless every worker of each gateway answers)."""
    out = run("-m", "tools.bench.workers_start", "--workers", "2", "--rounds", "1")
    for how in ("fork", "spawn"):
        line = re.search(rf"{how} +ready in ([0-9.]+) s +CPU per worker ([0-9.]+) s +workers' PSS ([0-9]+) MiB", out)
        assert line and all(float(v) > 0 for v in line.groups()), out
    assert "fork ÷ spawn:" in out


def test_suite_cpu_sees_the_cpu_of_a_child_nobody_waits_for(tmp_path: Path) -> None:
    """tools/suite_cpu.py counts a process whose parent never waits for it
    (what ``time`` misses: a fork server's children, a daemon), under its kind."""
    flag = tmp_path / "burnt"
    burn = ("import time; t = time.process_time()\n"
            "while time.process_time() - t < 0.5: pass\n"
            f"open({str(flag)!r}, 'w').close()")
    # Starts the burner, waits for its flag file, exits without reaping it.
    spawner = (f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
               f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
               "os._exit(0)")
    out = run("-m", "tools.suite_cpu", "--", sys.executable, "-c", spawner)
    summary = re.search(r"exit 0, [0-9.]+ s wall, ([0-9.]+) CPU-s seen in (\d+) processes", out)
    assert summary, out
    assert float(summary[1]) >= 0.4 and int(summary[2]) >= 2, out
    assert "other (python)" in out, out
