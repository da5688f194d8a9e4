"""Where the sign-in limiter keeps its counters: SQL tables, one row per counter.

* **PostgreSQL** (``DATABASE_URL``): in that database, beside the users, so
  every worker of every replica on every host counts against one budget.
* **SQLite**: in a file of its own next to the shared one
  (``app_data.db`` → ``app_data.signin-limiter.db``), never in the file the Go
  backend uses -- every Python write there can cost Go a "database is locked".
  The workers of one host share it (WAL, ``synchronous=NORMAL``: counters need
  no fsync per attempt), so ``--workers N`` does not multiply the budget. It
  holds nothing but counters: deleting it (gateway stopped) only forgets them.
* ``sqlite://`` (in memory): a private in-memory database, one per process.

Each counter moves by one conditional upsert (``INSERT … ON CONFLICT … DO
UPDATE … WHERE not blocked RETURNING``): the count, the block it earns and the
refusal while blocked are decided inside one statement, so no two requests,
workers or replicas can both take the last attempt of a budget.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import StaticPool

from services.common.db import Database

from .limiter import LimiterStore, Policy, SignInLimiter

log = logging.getLogger(__name__)

TABLES = (
    """CREATE TABLE IF NOT EXISTS signin_limits (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_attempt DOUBLE PRECISION NOT NULL,
  blocked_until DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (kind, key)
)""",
    """CREATE TABLE IF NOT EXISTS signin_known_good (
  account TEXT NOT NULL,
  client TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (account, client)
)""",
)
TABLE_LOCK_KEY = 0x6A756E6A6F + 1  # pg_advisory_xact_lock: replicas creating the tables at once
SWEEP_EVERY = 600.0  # seconds between deletions of long-quiet rows (per process)
SWEEP_AFTER = 86400.0  # a counter untouched this long restarts from zero anyway
KNOWN_GOOD_KEEP = 30 * 86400.0


def _count_sql(policy: Policy) -> str:
    """The conditional upsert for one policy; its numbers are literals taken
    from the policy (floats and ints: nothing user-supplied)."""
    n = "(CASE WHEN t.last_attempt < :stale THEN 1 ELSE t.attempts + 1 END)"
    steps = " ".join(f"WHEN {n} = {count} THEN :now + {float(block)!r}" for count, block in policy.ladder())
    block = f"CASE WHEN {n} < {int(policy.threshold)} THEN 0.0 {steps} ELSE :now + {float(policy.max_seconds)!r} END"
    return (
        "INSERT INTO signin_limits AS t (kind, key, attempts, last_attempt, blocked_until) "
        "VALUES (:kind, :key, 1, :now, :first_block) "
        f"ON CONFLICT (kind, key) DO UPDATE SET attempts = {n}, last_attempt = :now, blocked_until = {block} "
        "WHERE t.blocked_until <= :now "
        "RETURNING attempts"
    )


class SqlLimiterStore:
    """The limiter's counters in SQL (SQLite or PostgreSQL), every call one statement."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._count_sql: dict[Policy, str] = {}
        self._last_sweep = time.monotonic()
        self._create_tables()

    def _create_tables(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # IF NOT EXISTS alone still races between replicas on PostgreSQL.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TABLE_LOCK_KEY})
            for statement in TABLES:
                conn.execute(text(statement))

    def _execute(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []

    def blocked_until(self, keys: list[tuple[str, str]], now: float) -> float:
        where = " OR ".join(f"(kind = :k{i} AND key = :v{i})" for i in range(len(keys)))
        params: dict[str, Any] = {}
        for i, (kind, key) in enumerate(keys):
            params[f"k{i}"], params[f"v{i}"] = kind, key
        rows = self._execute(f"SELECT MAX(blocked_until) FROM signin_limits WHERE {where}", params)
        self._maybe_sweep(now)
        return float(rows[0][0] or 0.0) if rows else 0.0

    def count(self, kind: str, key: str, policy: Policy, now: float) -> float | None:
        sql = self._count_sql.get(policy) or self._count_sql.setdefault(policy, _count_sql(policy))
        block = policy.block_after(1)
        counted = self._execute(sql, {"kind": kind, "key": key, "now": now, "stale": now - policy.forget_after,
                                      "first_block": now + block if block else 0.0})
        if counted:
            return None
        rows = self._execute("SELECT blocked_until FROM signin_limits WHERE kind = :kind AND key = :key",
                             {"kind": kind, "key": key})
        return float(rows[0][0]) if rows else now + 1.0

    def forgive(self, kind: str, key: str, policy: Policy) -> None:
        self._execute(
            "UPDATE signin_limits SET attempts = attempts - 1, "
            "blocked_until = CASE WHEN attempts - 1 < :threshold THEN 0.0 ELSE blocked_until END "
            "WHERE kind = :kind AND key = :key AND attempts > 0",
            {"kind": kind, "key": key, "threshold": policy.threshold})

    def reset(self, kind: str, key: str) -> None:
        self._execute("DELETE FROM signin_limits WHERE kind = :kind AND key = :key", {"kind": kind, "key": key})

    def is_known_good(self, account: str, client: str, since: float) -> bool:
        return bool(self._execute(
            "SELECT 1 FROM signin_known_good WHERE account = :a AND client = :c AND at > :since",
            {"a": account, "c": client, "since": since}))

    def remember_good(self, account: str, client: str, now: float) -> None:
        self._execute(
            "INSERT INTO signin_known_good (account, client, at) VALUES (:a, :c, :now) "
            "ON CONFLICT (account, client) DO UPDATE SET at = excluded.at",
            {"a": account, "c": client, "now": now})

    def _maybe_sweep(self, now: float) -> None:
        """Delete rows nobody needs any more, so the tables stay small."""
        if time.monotonic() - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = time.monotonic()
        self._execute("DELETE FROM signin_limits WHERE blocked_until <= :now AND last_attempt < :old",
                      {"now": now, "old": now - SWEEP_AFTER})
        self._execute("DELETE FROM signin_known_good WHERE at < :old", {"old": now - KNOWN_GOOD_KEEP})

    def dispose(self) -> None:
        self.engine.dispose()


def local_sqlite_engine(path: str | None) -> Engine:
    """The limiter's own SQLite file (``None``: in memory, this process only)."""
    if path is None:
        return create_engine("sqlite://", poolclass=StaticPool, isolation_level="AUTOCOMMIT",
                             connect_args={"check_same_thread": False})
    engine = create_engine(f"sqlite:///{path}", isolation_level="AUTOCOMMIT",
                           connect_args={"check_same_thread": False, "timeout": 5.0})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode = WAL")  # workers read while one writes
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA busy_timeout = 5000")
        cur.close()

    return engine


def limiter_file_for(database_path: str) -> str:
    """``/dbdata/sqlite/app_data.db`` → ``/dbdata/sqlite/app_data.signin-limiter.db``."""
    folder, name = os.path.split(os.path.abspath(database_path))
    return os.path.join(folder, f"{os.path.splitext(name)[0]}.signin-limiter.db")


_lock = threading.Lock()
_stores: weakref.WeakKeyDictionary[Engine, SqlLimiterStore] = weakref.WeakKeyDictionary()


def store_for(db: Database) -> SqlLimiterStore:
    """The store that belongs with ``db`` (one per database per process)."""
    with _lock:
        store = _stores.get(db.engine)
        if store is None:
            if db.engine.dialect.name == "sqlite":
                path = db.engine.url.database
                local = None if not path or path == ":memory:" else limiter_file_for(path)
                store = SqlLimiterStore(local_sqlite_engine(local))
                log.info("sign-in limiter: counters in %s (shared by this host's workers)", local or "memory")
            else:
                store = SqlLimiterStore(db.engine)
                log.info("sign-in limiter: counters in %s (shared by every replica)", db.engine.url.render_as_string())
            _stores[db.engine] = store
        return store


def close_stores() -> None:
    """A graceful stop: dispose of the limiter's own SQLite engines."""
    with _lock:
        for engine, store in list(_stores.items()):
            if store.engine is not engine:
                store.dispose()
        _stores.clear()


def limiter_for(db: Database | Callable[[], Database]) -> SignInLimiter:
    """The limiter that keeps its counters where ``db`` says (see
    :func:`store_for`), opened on first use."""

    def store() -> LimiterStore:
        return store_for(db() if callable(db) else db)

    return SignInLimiter(store)
