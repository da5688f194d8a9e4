"""Two gateway processes as two hosts on one PostgreSQL, and what they must agree on.

Used by tests/wire/test_replicas.py (behaviour) and tools/bench/replicas.py
(the figures in docs/deploy.md, "Several replicas"). Each "host" has its own
directory (routes.yaml, GATEWAY_METRICS_DIR, GATEWAY_STATE_DIR, DuckDB file)
and port; what they share is DATABASE_URL, the session and gateway secrets and,
for traces, one ingestion service.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from services.common.session_codec import SessionCodec

from .gateway_proc import GatewayProc, config_version, routes_yaml, start_gateway

SESSION_SECRET = "test-secret"
CANARY = "/_standin/status"  # tests.fakeservices.flaky answers 500 there: a real regression
PYTHON_ROUTES = ("/sign-in", "/sign-out", "/auth-test", "/csrf", "/users", "/api_keys", "/otel")


def replica_config(legacy_url: str, *, canary_percent: float = 50, extra: str = "") -> str:
    routes = "".join(f"  - prefix: {p}\n    to: python\n" for p in PYTHON_ROUTES)
    routes += (f"  - prefix: {CANARY}\n    to: canary\n    percent: {canary_percent:g}\n"
               "    rollback: {min_requests: 20, max_error_rate_increase: 0.05}\n")
    # The test client plays the load balancer: X-Forwarded-For names the client.
    return routes_yaml(legacy_url, routes + extra) + "trusted_proxies: [127.0.0.1/32]\n"


@dataclass
class TwoHosts:
    a: GatewayProc
    b: GatewayProc
    database_url: str

    @property
    def both(self) -> tuple[GatewayProc, GatewayProc]:
        return self.a, self.b

    def stop(self) -> None:
        for gw in self.both:
            gw.stop()


def start_two_hosts(homes: tuple[Path, Path], config: str, database_url: str,
                    env: dict[str, str] | None = None,
                    per_host: Callable[[Path], dict[str, str]] | None = None) -> TwoHosts:
    started: list[GatewayProc] = []
    try:
        for home in homes:
            home.mkdir(parents=True, exist_ok=True)
            host_env = {
                "DATABASE_URL": database_url,
                "GATEWAY_METRICS_DIR": str(home / "metrics"),
                "GATEWAY_STATE_DIR": str(home / "state"),
                "GATEWAY_SECRET": "one secret for every replica",
                "JUNJO_SESSION_SECRET": SESSION_SECRET,
                **(env or {}), **(per_host(home) if per_host else {}),
            }
            for key in ("GATEWAY_METRICS_DIR", "GATEWAY_STATE_DIR"):
                Path(host_env[key]).mkdir(exist_ok=True)
            started.append(start_gateway(config, home, env=host_env))
    except BaseException:
        for gw in started:
            gw.stop()
        raise
    return TwoHosts(started[0], started[1], database_url)


def session_cookie(email: str) -> str:
    return f"session={SessionCodec([SESSION_SECRET.encode()]).encode(email)}; csrf=t"


# --- the limiter ---------------------------------------------------------------------

def sign_in_codes(hosts: TwoHosts, attempts: list[tuple[str, str]], client: str) -> list[int]:
    """Wrong guesses (email, password) from one client, alternating between the hosts."""
    codes = []
    for n, (email, password) in enumerate(attempts):
        gw = hosts.both[n % 2]
        r = httpx.post(gw.url + "/sign-in", json={"email": email, "password": password},
                       headers={"X-Forwarded-For": client}, timeout=10)
        codes.append(r.status_code)
    return codes


def checks_before_refusal(codes: list[int]) -> int:
    """Password checks (401s) an attacker got before the first 429."""
    return codes.index(429) if 429 in codes else len(codes)


# --- rollback verdicts ------------------------------------------------------------------

def rolled_back_on(gw: GatewayProc, path: str) -> bool:
    r = gw.admin_get("/_gateway/explain", method="GET", path=path)
    return "rolled back" in r.json().get("note", "")


def drive_into_rollback(gw: GatewayProc, path: str, limit: int = 600) -> None:
    """New clients (each a new sticky identity) until the canary rolls back."""
    for n in range(limit):
        with httpx.Client(timeout=10) as client:
            client.get(gw.url + path)
        if n % 10 == 9 and rolled_back_on(gw, path):
            return
    raise AssertionError(f"{gw.url}: no rollback after {limit} requests:\n{gw.output()[-2000:]}")


def verdict_time(database_url: str, prefix: str) -> float | None:
    """When the verdict was made (its ``at``), as shared in gateway_state."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT value FROM gateway_state WHERE name = :n"),
                                 {"n": f"rollback:{prefix}"}).scalar()
    finally:
        engine.dispose()
    return float(json.loads(value)["at"]) if value else None


def poll(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Seconds until ``predicate`` holds (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout:g} s")
        time.sleep(step)
    return time.monotonic() - started


def rollback_reach(hosts: TwoHosts, path: str, timeout: float = 15) -> float:
    """Roll the canary back on host A; seconds from A's verdict until host B follows it."""
    drive_into_rollback(hosts.a, path)
    poll(lambda: rolled_back_on(hosts.b, path), timeout)
    seen = time.time()
    made = verdict_time(hosts.database_url, CANARY)
    assert made is not None, "the verdict is not in gateway_state"
    return seen - made


# --- routes.yaml flips -------------------------------------------------------------------

def flip_convergence(hosts: TwoHosts, config: str, timeout: float = 15) -> float:
    """Write the same routes.yaml on both hosts; seconds until both serve it."""
    want = config_version(config)
    started = time.monotonic()
    for gw in hosts.both:
        gw.write_config(config)

    def live(gw: GatewayProc) -> bool:
        return gw.admin_get("/_gateway/routes").json()["version"] == want

    waiting = list(hosts.both)
    while waiting:
        waiting = [gw for gw in waiting if not live(gw)]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"routes.yaml {want} not live on {[gw.url for gw in waiting]}")
        if waiting:
            time.sleep(0.02)
    return time.monotonic() - started
