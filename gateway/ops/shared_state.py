"""State the gateway's processes must agree on (canary rollback verdicts).

One small interface, two homes:

* :class:`FileState` -- a JSON file in ``GATEWAY_STATE_DIR``, shared by the
  workers of one ``gateway serve`` on one host (the default);
* :class:`DatabaseState` -- rows of the table ``gateway_state`` in the
  PostgreSQL ``DATABASE_URL``, shared by every replica on every host.

:func:`open_shared_state` picks one. A SQLite ``DATABASE_URL`` keeps the file:
that file is the Go backend's, and every write there can cost Go a "database
is locked".

The gateway owns this table and this module: services never see it, and it
uses none of theirs (only the same URL). Every call blocks: the gateway calls
it from a worker thread, once a second (``Gateway._tick``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("gateway.state")

Entries = dict[str, dict[str, Any]]

STATE_TABLE = """CREATE TABLE IF NOT EXISTS gateway_state (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at DOUBLE PRECISION NOT NULL
)"""
TABLE_LOCK_KEY = 0x6A756E6A6F + 2  # pg_advisory_xact_lock: replicas creating the table at once


class SharedState(Protocol):
    # True when put() is a cheap local write the request path may make at once.
    immediate: bool

    def put(self, key: str, value: dict[str, Any]) -> None: ...

    def read_all(self) -> Entries | None:
        """Every entry; None when nothing changed since the last call."""
        ...

    def describe(self) -> str: ...


class FileState:
    """A JSON object in one file; writers merge into it and rename, readers
    re-read it when its mtime moves."""

    immediate = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = 0

    def _load(self) -> Entries:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def put(self, key: str, value: dict[str, Any]) -> None:
        merged = self._load()
        merged[key] = value
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(merged))
        os.replace(tmp, self.path)

    def read_all(self) -> Entries | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        return self._load()

    def describe(self) -> str:
        return f"file {self.path} (this host's workers)"


class DatabaseState:
    """Rows ``<namespace>:<key>`` of ``gateway_state``, each written by one
    upsert; the table is created on first use, so a database that is down at
    start only delays sharing (the gateway serves meanwhile)."""

    immediate = False

    def __init__(self, url: str, namespace: str) -> None:
        from sqlalchemy import create_engine

        # A pool of one or two: one call a second per process.
        self.engine = create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True, hide_parameters=True,
                                    connect_args={"connect_timeout": 5, "application_name": "junjo-gateway-state"})
        self.namespace = namespace
        self._ready = False

    def _table(self, conn: Any) -> None:
        from sqlalchemy import text

        if self._ready:
            return
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TABLE_LOCK_KEY})
        conn.execute(text(STATE_TABLE))
        self._ready = True

    def put(self, key: str, value: dict[str, Any]) -> None:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            self._table(conn)
            conn.execute(text(
                "INSERT INTO gateway_state (name, value, updated_at) VALUES (:n, :v, :t) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"),
                {"n": f"{self.namespace}:{key}", "v": json.dumps(value), "t": time.time()})

    def read_all(self) -> Entries | None:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            self._table(conn)
            rows = conn.execute(text("SELECT name, value FROM gateway_state WHERE name LIKE :p"),
                                {"p": f"{self.namespace}:%"}).all()
        skip = len(self.namespace) + 1
        return {name[skip:]: json.loads(value) for name, value in rows}

    def describe(self) -> str:
        return f"table gateway_state in {self.engine.url.render_as_string()} (every replica)"

    def dispose(self) -> None:
        self.engine.dispose()


def is_server_database(url: str | None) -> bool:
    """True for a DATABASE_URL every host can reach (PostgreSQL), not SQLite."""
    if not url:
        return False
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name() == "postgresql"


def open_shared_state(namespace: str, *, state_dir: str | None, database_url: str | None) -> SharedState | None:
    """Where ``namespace`` lives: the server database when there is one, else
    ``<state_dir>/<namespace>s.json``; None when neither is configured."""
    if is_server_database(database_url):
        assert database_url is not None
        return DatabaseState(database_url, namespace)
    if state_dir:
        return FileState(Path(state_dir) / f"{namespace}s.json")
    return None


def replica_warnings(database_url: str | None, secret: str | None) -> list[str]:
    """What replicas on several hosts need that one host does not, when missing.

    A server DATABASE_URL is the sign of several hosts: then every replica
    must sign what the gateway signs with one key, or an anonymous client's
    canary side (the gw_id cookie) changes from one replica to the next."""
    if not is_server_database(database_url):
        return []
    warnings = []
    if not secret:
        warnings.append("DATABASE_URL names a server database (replicas on several hosts?) but GATEWAY_SECRET "
                        "is not set: each process signs canary cookies with its own key, so an anonymous "
                        "client may land on Go at one replica and on Python at the next. Set the same "
                        "GATEWAY_SECRET on every replica (docs/deploy.md, \"Several replicas\").")
    return warnings

