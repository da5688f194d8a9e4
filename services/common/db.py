"""The legacy SQLite database (users, api_keys, poller_state), shared with Go.

* Location: ``DATABASE_URL`` (any SQLAlchemy URL) or else the file
  ``JUNJO_SQLITE_PATH`` (default ``data/app_data.db`` relative to the CWD;
  its parent directory is created).
* Schema: when none of the legacy tables exists, the goose migration
  ``00001_initial_schema.sql`` is applied verbatim **and recorded in
  ``goose_db_version``** (versions 0 and 1, as goose records them), so a Go
  backend booting later on the same file skips the migration instead of
  failing on ``CREATE TABLE users``. Existing tables are never altered; a
  partially present schema only gets the missing tables (``IF NOT EXISTS``).
* Concurrency with the Go process: every connection sets
  ``journal_mode=WAL`` and ``busy_timeout=5000`` so readers never block the
  writer and a briefly locked file is retried instead of failing.
* Queries are the legacy sqlc queries, so ordering (ties included) matches.

Everything here is blocking: from async code call ``await db.run(db.method, ...)``
(a worker thread, via ``starlette.concurrency.run_in_threadpool``).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool

from services.registry import in_dry_run

from .settings import Settings, get_settings


T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

# db/migrations/00001_initial_schema.sql (goose Up), statement by statement.
MIGRATION_00001 = (
    """CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    "CREATE INDEX idx_users_email ON users (email)",
    """CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    """CREATE TABLE poller_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  -- Enforce a single row
  last_key BLOB
)""",
)
LEGACY_TABLES = ("users", "api_keys", "poller_state")

# goose v3's SQLite version table.
GOOSE_TABLE = """CREATE TABLE IF NOT EXISTS goose_db_version (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  version_id INTEGER NOT NULL,
  is_applied INTEGER NOT NULL,
  tstamp TIMESTAMP DEFAULT (datetime('now'))
)"""


class DuplicateError(Exception):
    """A UNIQUE constraint rejected the row (e.g. the email is taken)."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    key: str
    name: str
    created_at: datetime


def parse_timestamp(value: Any) -> datetime:
    """A TIMESTAMP column as Go's sqlite driver reads it (naive text = UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def rfc3339(dt: datetime) -> str:
    """Go's ``time.Time`` JSON form (RFC 3339 with nanoseconds trimmed, ``Z`` for UTC)."""
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        base += ("." + f"{dt.microsecond:06d}").rstrip("0")
    offset = dt.utcoffset()
    if not offset:
        return base + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{base}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def database_url(settings: Settings | None = None) -> str:
    s = settings or get_settings()
    if s.database_url:
        return s.database_url
    path = os.path.abspath(s.sqlite_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine on ``url``; SQLite connections get WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    # hide_parameters: SQLAlchemy's error texts would otherwise quote bound
    # values — API keys, emails, password hashes — into logs and answers.
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if parsed.database and parsed.database != ":memory:":
            _retry_locked(lambda: cur.execute("PRAGMA journal_mode = WAL"))
        cur.close()

    return engine


def _retry_locked(action: Callable[[], Any], attempts: int = 50) -> Any:
    """Run ``action``, waiting out a sibling process (another worker, the Go
    backend) that holds the file while it sets WAL mode or creates the schema;
    busy_timeout doesn't cover those."""
    for attempt in range(attempts):
        try:
            return action()
        except (sqlite3.OperationalError, OperationalError) as exc:
            if attempt == attempts - 1 or not any(w in str(exc) for w in ("locked", "already exists")):
                raise
            time.sleep(0.02 * (attempt + 1))


def ensure_schema(engine: Engine) -> None:
    """Create the legacy schema when missing; never alter existing tables.

    Several workers may open a fresh file at once: whoever loses the race sees
    "already exists" or "locked", and retries against the now-existing tables."""
    _retry_locked(lambda: _ensure_schema_once(engine), attempts=20)


def _ensure_schema_once(engine: Engine) -> None:
    existing = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        if not existing.intersection(LEGACY_TABLES):
            for statement in MIGRATION_00001:
                conn.execute(text(statement))
            if "goose_db_version" not in existing:
                conn.execute(text(GOOSE_TABLE))
                conn.execute(text(
                    "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1)"
                ))
            return
        for statement in MIGRATION_00001:
            if statement.startswith("CREATE TABLE "):
                name = statement.split()[2]
                if name not in existing:
                    conn.execute(text(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)))


def _user(row: Any) -> User:
    return User(int(row.id), row.email, row.password_hash, parse_timestamp(row.created_at))


def _api_key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.key, row.name, parse_timestamp(row.created_at))


class Database:
    """Repository over the legacy tables. Methods block: use :meth:`run` from async code."""

    def __init__(self, engine: Engine, *, create_schema: bool = True) -> None:
        self.engine = engine
        if create_schema:
            ensure_schema(engine)

    @classmethod
    def from_url(cls, url: str) -> "Database":
        return cls(make_engine(url))

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking ``func(*args)`` in a worker thread."""
        return await run_in_threadpool(func, *args)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction — rolled back instead of committed in a dry run
        (a shadowed write replayed to Python must change nothing)."""
        if not in_dry_run():
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                yield conn
            finally:
                transaction.rollback()

    # --- users ------------------------------------------------------------

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM users")).scalar_one())

    def has_users(self) -> bool:
        return self.count_users() > 0

    def get_user_by_email(self, email: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM users WHERE email = :email LIMIT 1"), {"email": email}
            ).first()
        return _user(row) if row else None

    def create_user(self, email: str, password_hash: str) -> User:
        """Insert a user; :class:`DuplicateError` when the email exists."""
        try:
            with self._write() as conn:
                row = conn.execute(
                    text("INSERT INTO users (email, password_hash) VALUES (:e, :h) RETURNING *"),
                    {"e": email, "h": password_hash},
                ).one()
        except IntegrityError as exc:
            raise DuplicateError(str(exc.orig)) from exc
        return _user(row)

    def create_first_user(self, email: str, password_hash: str) -> User | None:
        """Insert only when the table is empty (one atomic statement); None otherwise."""
        with self._write() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO users (email, password_hash) SELECT :e, :h "
                    "WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING *"
                ),
                {"e": email, "h": password_hash},
            ).first()
        return _user(row) if row else None

    def list_users(self) -> list[User]:
        """Newest first (the legacy ``ListUsers`` query; ties keep SQLite's order)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, email, '' AS password_hash, created_at FROM users "
                     "ORDER BY created_at DESC")
            ).all()
        return [_user(r) for r in rows]

    def delete_user(self, user_id: int) -> None:
        with self._write() as conn:
            conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})

    # --- api_keys ---------------------------------------------------------

    def create_api_key(self, key_id: str, key: str, name: str) -> ApiKey:
        """Insert an API key; :class:`DuplicateError` when the id or key exists."""
        try:
            with self._write() as conn:
                row = conn.execute(
                    text("INSERT INTO api_keys (id, key, name) VALUES (:i, :k, :n) RETURNING *"),
                    {"i": key_id, "k": key, "n": name},
                ).one()
        except IntegrityError as exc:
            raise DuplicateError(str(exc.orig)) from exc
        return _api_key(row)

    def get_api_key(self, key: str) -> ApiKey | None:
        """Lookup by key value (exact, case-sensitive), as ValidateApiKey does."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM api_keys WHERE key = :k LIMIT 1"), {"k": key}
            ).first()
        return _api_key(row) if row else None

    def list_api_keys(self) -> list[ApiKey]:
        """Newest first (the legacy ``ListAPIKeys`` query)."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM api_keys ORDER BY created_at DESC")).all()
        return [_api_key(r) for r in rows]

    def delete_api_key(self, key: str) -> bool:
        """Delete by key value; True when a row was removed."""
        with self._write() as conn:
            result = conn.execute(text("DELETE FROM api_keys WHERE key = :k"), {"k": key})
        return result.rowcount > 0


_lock = threading.Lock()
_database: Database | None = None


def get_database() -> Database:
    """The process-wide database built from the environment (created on first use)."""
    global _database
    with _lock:
        if _database is None:
            _database = Database.from_url(database_url())
        return _database


def close_database() -> None:
    """Dispose of the process-wide database's connections (a graceful stop).
    Idempotent: every feature that uses the database lists it as its shutdown."""
    set_database(None)


def set_database(db: Database | None) -> None:
    """Replace (tests) or forget the process-wide database."""
    global _database
    with _lock:
        if _database is not None and _database is not db:
            _database.dispose()
        _database = db
