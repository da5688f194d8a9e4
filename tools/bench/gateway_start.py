"""CPU of one test gateway's life, start to graceful stop: forked from the
test suite's fork server against a fresh interpreter, side by side.

    python -m tools.bench.gateway_start [--rounds 10]

Each round starts one gateway each way, in turn, on the same routes.yaml (a
route to Go, Python routes that open their SQLite file): it waits for
``/_gateway/health``, sends SIGTERM and reads the process's CPU from
``wait4``. The forked ones go through the fork server's own child code
(``tests.support.forkserver``: this process imports what the server imports,
then forks), the fresh ones are ``python -m gateway.cli``. Prints the medians
and their ratio; the README's Development section quotes it.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import forkserver
from tests.support.standin import free_port
from tests.support.waiting import until

REPO = Path(__file__).resolve().parents[2]
ROUTES = """legacy:
  url: http://127.0.0.1:9
routes:
  - prefix: /ping
    to: python
  - prefix: /users
    to: python
  - prefix: /api_keys
    to: python
  - prefix: /sign-in
    to: go
"""


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_gateway/health", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def one_life(forked: bool, workdir: Path, n: int) -> float:
    """CPU seconds (user + system) of one gateway from start to exit."""
    port = free_port()
    config, log = workdir / "routes.yaml", workdir / f"gateway-{n}.log"
    log.touch()
    argv = ["serve", "--config", str(config), "--port", str(port)]
    env = {**os.environ, "JUNJO_SESSION_SECRET": "bench-secret", "GATEWAY_ADMIN_TOKEN": "bench-admin-token-0123456789",
           "JUNJO_SQLITE_PATH": str(workdir / f"app-{n}.db")}
    env.pop("LEGACY_URL", None)
    if forked:
        pid = os.fork()
        if pid == 0:  # what the fork server's child does, exit included; never returns
            forkserver._child({"argv": argv, "env": env, "cwd": str(REPO), "log": str(log)}, ())
    else:
        with open(log, "ab") as out:
            pid = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).pid
    try:
        until(lambda: _healthy(port), 30, what=f"gateway (pid {pid}) healthy")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise
    os.kill(pid, signal.SIGTERM)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    forkserver._preload()  # as the fork server does before its first fork
    forked: list[float] = []
    fresh: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gateway-start-") as tmp:
        workdir = Path(tmp)
        (workdir / "routes.yaml").write_text(ROUTES)
        for n in range(args.rounds):
            forked.append(one_life(True, workdir, 2 * n))
            fresh.append(one_life(False, workdir, 2 * n + 1))
    a, b = statistics.median(forked), statistics.median(fresh)
    print(f"gateway start + graceful stop, CPU seconds, median of {args.rounds} rounds (interleaved):")
    print(f"  forked from the fork server  {a:.3f}   [{', '.join(f'{x:.2f}' for x in forked)}]")
    print(f"  fresh interpreter            {b:.3f}   [{', '.join(f'{x:.2f}' for x in fresh)}]")
    print(f"  forked ÷ fresh               {a / b:.2f}×")


if __name__ == "__main__":
    main()
