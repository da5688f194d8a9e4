"""Two gateways over one seeded Go stand-in: every listed family on ``go`` in
one, on ``python`` in the other, so a test sends the same request to both and
compares what comes back (the parity tests' common fixture)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.standin import start_standin

SECRET = "test-secret"  # the stand-in's session secret, shared by both gateways
EMAIL, PASSWORD = "ada@example.com", "correct horse"  # the user the stand-in is seeded with


def routes_for(families: Iterable[str], target: str) -> str:
    return "".join(f"  - prefix: {p}\n    to: {target}\n" for p in families)


@contextmanager
def go_and_python(base: Path, families: Iterable[str], *, limits: str | None = None,
                  with_otel: bool = True) -> Iterator[tuple[GatewayProc, GatewayProc]]:
    """(all-go gateway, all-python gateway) over one stand-in and one SQLite
    file, with the seeded user; each gateway gets its own DuckDB file when
    ``with_otel``."""
    families = tuple(families)
    db = str(base / "app_data.db")
    standin = start_standin(db, env={"JUNJO_SESSION_SECRET": SECRET},
                            extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
    started: list[GatewayProc] = []
    try:
        for target in ("go", "python"):
            home = base / target
            home.mkdir()
            env = {"JUNJO_SQLITE_PATH": db, "JUNJO_SESSION_SECRET": SECRET}
            if with_otel:
                env["OTEL_DUCKDB_PATH"] = str(home / "otel.duckdb")
            started.append(start_gateway(routes_yaml(standin.url, routes_for(families, target), limits=limits),
                                         home, env=env))
        yield started[0], started[1]
    finally:
        for gw in started:
            gw.stop()
        standin.stop()


def signed_in_cookie(gw: GatewayProc) -> str:
    """``session=…`` for the seeded user, signed in through ``gw``."""
    r = httpx.post(gw.url + "/sign-in", json={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.headers["set-cookie"].split(";", 1)[0]
