"""How often the Go backend fails with "database is locked" because Python shares its file.

The legacy opens the SQLite file with no busy timeout: a write (or a read at
the moment of a commit) fails at once with SQLITE_BUSY when another connection
holds a conflicting lock -- another Go connection, or the gateway's Python
side. This runs the Go stand-in (which opens the file exactly like the legacy)
and the real gateway on one file, drives two client streams at a steady rate,
and counts failures per side in three phases of the same run:

* ``go-all``: both streams to Go (the traffic before any migration);
* ``go-half``: only stream B, to Go (Go's own share of the mixed phase, alone);
* ``mixed``: stream A to Python, stream B to Go (a migration in progress).

The phases take turns in short slices (``--slices``), so that the machine's
other load, which sets how long an fsync and so a lock lasts, weighs on all
three alike. Then the stand-in is restarted ``--boots`` times while the
Python stream runs: how often the legacy's boot meets a Python commit.

Both streams write users and API keys and read both lists, in the same cycle
(POST /api_keys, GET /api_keys, POST /users, GET /users, DELETE /users/:id,
DELETE /api_keys/:key), forced to a side with ``X-Gateway-Backend`` (the
gateway's admin override). Go's "database is locked" count comes from the
stand-in's own counter (``/_standin/db-errors``); any answer other than the
expected status is a failed request.

    python -m tools.bench.sqlite_contention [--quick] [--duration S] [--slices N] [--rate R] [--clients N] [--boots N]

Loopback only; every phase is bounded in time. Results: stdout and
bench-results/sqlite_contention.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.standin import StandInError, start_standin

ROOT = Path(__file__).resolve().parents[2]
EMAIL, PASSWORD = "bench@example.com", "bench pw"
ADMIN_TOKEN = "contention-bench"
# The mixed split in routes.yaml; the override header then forces each
# stream's requests to its side, so both sides write both tables.
ROUTES = "  - prefix: /api_keys\n    to: python\n  - prefix: /users\n    to: go\n"


@dataclass
class Tally:
    requests: int = 0
    failed: int = 0
    writes: int = 0
    failed_writes: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, ok: bool, write: bool, what: str) -> None:
        self.requests += 1
        self.writes += write
        if not ok:
            self.failed += 1
            self.failed_writes += write
            if len(self.samples) < 5:
                self.samples.append(what)

    def pct(self) -> float:
        return 100.0 * self.failed / self.requests if self.requests else 0.0


@dataclass
class Phase:
    name: str
    targets: dict[str, str | None]  # stream -> "go" | "python" | None (idle)
    tallies: dict[str, Tally] = field(default_factory=dict)
    go_busy: int = 0
    go_other: int = 0
    seconds: float = 0.0


class Stream:
    """``clients`` threads sending ``rate`` requests/s in total (Poisson
    arrivals, open loop: a late request is sent at once, never skipped)."""

    _ids = itertools.count()

    def __init__(self, url: str, session: str, target: str, rate: float, clients: int) -> None:
        self.url, self.target = url, target
        self.headers = {"X-Gateway-Backend": target, "X-Gateway-Admin-Token": ADMIN_TOKEN,
                        "Cookie": f"session={session}; csrf=bench"}
        self.per_client = rate / clients
        self.clients = clients
        self.tally = Tally()
        self._lock = threading.Lock()

    def run(self, seconds: float) -> None:
        stop_at = time.monotonic() + seconds
        threads = [threading.Thread(target=self._client, args=(stop_at,), daemon=True)
                   for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)

    def _client(self, stop_at: float) -> None:
        rng = random.Random()
        due = time.monotonic()
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while True:
                for step in self._cycle(client):
                    due += rng.expovariate(self.per_client)
                    if due >= stop_at:
                        return
                    time.sleep(max(0.0, due - time.monotonic()))
                    step()

    def _cycle(self, client: httpx.Client):
        """One cycle's requests as callables (each needs the previous one's answer)."""
        n = next(self._ids)
        email = f"{self.target}-{os.getpid()}-{n}@bench.example"
        state: dict[str, str] = {}

        def create_key() -> None:
            r = self._send(client, "POST", "/api_keys", 201, json={"name": f"bench-{n}"})
            if r is not None:
                state["key"] = r.json()["Key"]

        def create_user() -> None:
            self._send(client, "POST", "/users", 200, json={"email": email, "password": "pw"})

        def find_user() -> None:
            r = self._send(client, "GET", "/users", 200, write=False)
            for u in (r.json() if r is not None else []):
                if u["Email"] == email:
                    state["user"] = str(u["ID"])

        def delete_user() -> None:
            if "user" in state:
                self._send(client, "DELETE", f"/users/{state['user']}", 200)

        def delete_key() -> None:
            if "key" in state:
                self._send(client, "DELETE", f"/api_keys/{state['key']}", 204)

        return [create_key, lambda: self._send(client, "GET", "/api_keys", 200, write=False),
                create_user, find_user, delete_user, delete_key]

    def _send(self, client: httpx.Client, method: str, path: str, status: int, *,
              write: bool = True, **kw) -> httpx.Response | None:
        try:
            r = client.request(method, path, **kw)
            ok = r.status_code == status
            what = f"{method} /{path.split('/')[1]}: {r.status_code} {r.text.strip()[:120]}"
        except httpx.HTTPError as exc:
            r, ok, what = None, False, f"{method} {path}: {type(exc).__name__}"
        with self._lock:
            self.tally.add(ok, write, what)
        return r if ok else None


def db_errors(standin_url: str) -> tuple[int, int]:
    d = httpx.get(standin_url + "/_standin/db-errors").json()
    return d["busy"], d["other"]


def run_phase(phase: Phase, gw: GatewayProc, standin_url: str, session: str,
              rate: float, clients: int, seconds: float) -> None:
    streams = {name: Stream(gw.url, session, target, rate, clients)
               for name, target in phase.targets.items() if target}
    busy0, other0 = db_errors(standin_url)
    started = time.monotonic()
    threads = [threading.Thread(target=s.run, args=(seconds,)) for s in streams.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds += time.monotonic() - started
    busy1, other1 = db_errors(standin_url)
    phase.go_busy += busy1 - busy0
    phase.go_other += other1 - other0
    for name, stream in streams.items():  # this slice's counts added to the phase's
        total = phase.tallies.setdefault(f"{name} ({stream.target})", Tally())
        for f in ("requests", "failed", "writes", "failed_writes"):
            setattr(total, f, getattr(total, f) + getattr(stream.tally, f))
        total.samples = (total.samples + stream.tally.samples)[:5]


def boot_phase(gw: GatewayProc, db: Path, session: str, rate: float, clients: int,
               boots: int) -> dict:
    """Restart the stand-in ``boots`` times while the Python stream runs alone:
    how often the legacy's boot (goose reads, then the PRAGMAs, no busy
    timeout) meets a Python commit and exits."""
    stream = Stream(gw.url, session, "python", rate, clients)
    done = threading.Event()

    def drive() -> None:
        while not done.is_set():
            stream.run(2.0)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    failed: list[str] = []
    for _ in range(boots):
        try:
            start_standin(str(db)).stop()
        except StandInError as exc:
            failed.append(str(exc).strip().splitlines()[-1])
    done.set()
    driver.join(60)
    t = stream.tally
    print(f"\nGo boots beside Python ({t.writes} Python writes of {t.requests} requests, "
          f"{t.failed} failed): {len(failed)} of {boots} failed"
          + (f", e.g. {failed[0]}" if failed else ""))
    return {"boots": boots, "failed_boots": len(failed), "samples": failed[:3],
            "python_requests": t.requests, "python_writes": t.writes, "python_failed": t.failed}


def side_totals(phase: Phase, side: str) -> Tally:
    total = Tally()
    for key, t in phase.tallies.items():
        if key.endswith(f"({side})"):
            for f in ("requests", "failed", "writes", "failed_writes"):
                setattr(total, f, getattr(total, f) + getattr(t, f))
            total.samples += t.samples
    return total


def report(phases: list[Phase], args: argparse.Namespace) -> dict:
    print(f"\nSQLite shared by Go and Python: {args.rate:g} req/s per stream, {args.clients} clients "
          f"per stream, {args.duration:g} s per phase in {args.slices} slices")
    print(f"{'phase':<9} {'side':<7} {'requests':>8} {'failed':>7} {'fail %':>7} "
          f"{'writes':>7} {'w.fail':>7} {'w.fail %':>8}  Go 'database is locked'")
    rows = []
    for p in phases:
        for side in ("go", "python"):
            t = side_totals(p, side)
            if not t.requests:
                continue
            wpct = 100.0 * t.failed_writes / t.writes if t.writes else 0.0
            locked = f"{p.go_busy} (other db errors {p.go_other})" if side == "go" else ""
            print(f"{p.name:<9} {side:<7} {t.requests:>8} {t.failed:>7} {t.pct():>6.2f}% "
                  f"{t.writes:>7} {t.failed_writes:>7} {wpct:>7.2f}%  {locked}")
            rows.append({"phase": p.name, "side": side, **{k: v for k, v in asdict(t).items()},
                         "fail_pct": round(t.pct(), 3), "write_fail_pct": round(wpct, 3),
                         "go_database_locked": p.go_busy if side == "go" else None})
            for s in t.samples[:2]:
                print(f"{'':<17} e.g. {s}")
    by = {(r["phase"], r["side"]): r for r in rows}
    summary = {
        "go_fail_pct_go_all": by.get(("go-all", "go"), {}).get("fail_pct"),
        "go_fail_pct_go_half": by.get(("go-half", "go"), {}).get("fail_pct"),
        "go_fail_pct_mixed": by.get(("mixed", "go"), {}).get("fail_pct"),
        "python_fail_pct_mixed": by.get(("mixed", "python"), {}).get("fail_pct"),
    }
    labels = {"go_fail_pct_go_all": "Go failures, all traffic on Go",
              "go_fail_pct_go_half": "Go failures, Go's half alone",
              "go_fail_pct_mixed": "Go failures, Go's half beside Python",
              "python_fail_pct_mixed": "Python failures beside Go"}
    print("\n" + "; ".join(f"{labels[k]}: {v:.2f}%" for k, v in summary.items() if v is not None))
    load = os.getloadavg()
    print(f"machine load average (1/5/15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs: other work lengthens fsyncs, so locks, so every figure")
    return {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg": load, "args": vars(args), "summary": summary, "rows": rows}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 s phases: a smoke run, figures rough")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase (default 30)")
    ap.add_argument("--rate", type=float, default=20.0, help="requests/s per stream (default 20)")
    ap.add_argument("--clients", type=int, default=4, help="client threads per stream (default 4)")
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    ap.add_argument("--slices", type=int, default=6,
                    help="phases take turns in this many slices each (default 6)")
    ap.add_argument("--boots", type=int, default=40,
                    help="stand-in restarts beside the Python stream (default 40; 0 skips)")
    ap.add_argument("--phases", default="go-all,go-half,mixed",
                    help="comma list of phases to run (default all three)")
    ap.add_argument("--output", default=str(ROOT / "bench-results" / "sqlite_contention.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.boots, args.slices = 6.0, min(args.boots, 10), 2
    args.slices = max(1, args.slices)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sqlite-contention-") as tmp:
        db = Path(tmp) / "app_data.db"
        standin = start_standin(str(db), extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
        gw = None
        try:
            gw = start_gateway(routes_yaml(standin.url, ROUTES), Path(tmp),
                               env={"JUNJO_SQLITE_PATH": str(db), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
                                    "GATEWAY_ACCESS_LOG": "0"},
                               args=["--workers", str(args.workers)])
            r = httpx.post(standin.url + "/sign-in", json={"email": EMAIL, "password": PASSWORD})
            r.raise_for_status()
            session = r.cookies["session"]
            phases = [p for p in (Phase("go-all", {"A": "go", "B": "go"}),
                                  Phase("go-half", {"A": None, "B": "go"}),
                                  Phase("mixed", {"A": "python", "B": "go"}))
                      if p.name in args.phases.split(",")]
            # The phases take turns in slices, so that whatever else the machine
            # does meanwhile (it sets how long an fsync, so a lock, lasts) weighs
            # on all of them alike.
            slice_s = args.duration / args.slices
            for n in range(args.slices):
                for phase in phases:
                    print(f"phase {phase.name}, slice {n + 1}/{args.slices} ({slice_s:g} s) ...", flush=True)
                    run_phase(phase, gw, standin.url, session, args.rate, args.clients, slice_s)
            standin.stop()
            boots = None
            if args.boots:
                print(f"phase boots ({args.boots} stand-in starts) ...", flush=True)
                boots = boot_phase(gw, db, session, args.rate, args.clients, args.boots)
        finally:
            if gw is not None:
                gw.stop()
            standin.stop()
    result = report(phases, args)
    result["boots"] = boots
    if boots:
        print(f"Go boots beside Python: {boots['failed_boots']} of {boots['boots']} failed "
              f"({boots['python_writes']} Python writes in the meantime)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
