"""Figures for docs/deploy.md, "Several replicas": two gateways as two hosts on one PostgreSQL.

* the sign-in limiter's budget across replicas: password checks a brute-force
  run gets on one account, and a spray across accounts, alternating between
  the two hosts (and, for comparison, one host with two workers on SQLite);
* how long a canary rollback verdict made on host A takes to reach host B
  (from the verdict's own timestamp to B following it; ``--runs`` times, the
  route re-armed by a routes.yaml edit in between);
* how long a routes.yaml flip written to both hosts takes to be live on both.

    python -m tools.bench.replicas [--runs N]

Starts its own throwaway PostgreSQL (tests/support/postgres.py), the Go
stand-in and the gateways, on loopback; stops them all. Results: stdout and
bench-results/replicas.json, with the run's date, commit and load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from tests.support.gateway_proc import routes_yaml, start_gateway
from tests.support.postgres import PostgresServer
from tests.support.replicas import (
    CANARY,
    checks_before_refusal,
    flip_convergence,
    replica_config,
    rollback_reach,
    sign_in_codes,
    start_two_hosts,
)
from tests.support.standin import start_standin

REPO = Path(__file__).resolve().parents[2]


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def limiter_budgets(hosts, sqlite_two_workers) -> dict[str, int]:
    one_account = [("ada@example.com", f"guess {n}") for n in range(12)]
    spray = [(f"user{n}@example.com", "guess") for n in range(30)]
    out = {
        "two hosts, one account": checks_before_refusal(sign_in_codes(hosts, one_account, "203.0.113.66")),
        "two hosts, 30 accounts": checks_before_refusal(sign_in_codes(hosts, spray, "203.0.113.99")),
    }

    class OneHost:  # two workers behind one port: requests land on either
        both = (sqlite_two_workers, sqlite_two_workers)

    out["one host, 2 workers, SQLite, one account"] = checks_before_refusal(
        sign_in_codes(OneHost, one_account, "203.0.113.66"))  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rollback and flip measurements (default 5)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = PostgresServer.start()
    standin = start_standin(str(root / "standin.db"))
    hosts = single = None
    try:
        hosts = start_two_hosts((root / "host-a", root / "host-b"), replica_config(standin.url),
                                server.new_schema_url())
        single_home = root / "one-host"
        single_home.mkdir()
        single = start_gateway(routes_yaml(standin.url, "  - prefix: /sign-in\n    to: python\n")
                               + "trusted_proxies: [127.0.0.1/32]\n", single_home,
                               env={"JUNJO_SQLITE_PATH": str(single_home / "app_data.db")}, args=["--workers", "2"])
        budgets = limiter_budgets(hosts, single)
        reach, flips = [], []
        for run in range(args.runs):
            # Re-arm the canary (a new percentage is a new route spec) and time that flip too.
            flips.append(flip_convergence(hosts, replica_config(standin.url, canary_percent=50 + run)))
            reach.append(rollback_reach(hosts, CANARY + "/200"))
    finally:
        for gw in (*(hosts.both if hosts else ()), *((single,) if single else ())):
            gw.stop()
        standin.stop()
        server.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    load = os.getloadavg()
    run_name = f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit {commit}, load average {load[0]:.2f}"
    result = {"run": run_name, "limiter_checks_before_429": budgets, "rollback_reach_s": spread(reach),
              "flip_converge_s": spread(flips), "raw": {"rollback_reach_s": reach, "flip_converge_s": flips}}
    print(f"run: {run_name}")
    for name, checks in budgets.items():
        print(f"  limiter, {name}: {checks} password checks before the first 429")
    for name, key in (("rollback verdict A → B", "rollback_reach_s"), ("routes.yaml flip on both", "flip_converge_s")):
        s = result[key]
        print(f"  {name}: min {s['min']:.2f} s, median {s['median']:.2f} s, max {s['max']:.2f} s ({s['n']} runs)")
    out = REPO / "bench-results" / "replicas.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
