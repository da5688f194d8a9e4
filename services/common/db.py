"""The legacy database (users, api_keys, poller_state): SQLite shared with Go, or PostgreSQL.

* Location: ``DATABASE_URL`` (a ``sqlite:`` or ``postgresql:`` SQLAlchemy URL)
  or else the file ``JUNJO_SQLITE_PATH`` (default ``data/app_data.db``
  relative to the CWD; its parent directory is created).
* PostgreSQL (once the Go backend, which only speaks SQLite, is retired) gets
  the same tables in its own types (:data:`POSTGRES_SCHEMA`: identity ids,
  ``TIMESTAMPTZ``, ``BYTEA``, the same unique constraints), created under an
  advisory lock so replicas starting together don't race. Its queries differ
  from SQLite's only where the two databases do: a table lock makes the
  "first user only when the table is empty" insert atomic (SQLite's write lock
  does that by itself), and lists break ``created_at`` ties the way SQLite's
  scan does, in insertion order (``users.id``; ``api_keys.seq``, an explicit
  insertion counter, since PostgreSQL has no rowid).
  Timestamps are read back in UTC whatever the session's time zone.
* SQLite schema: when none of the legacy tables exists, the goose migration
  ``00001_initial_schema.sql`` is applied verbatim **and recorded in
  ``goose_db_version``** (versions 0 and 1, as goose records them), so a Go
  backend booting later on the same file skips the migration instead of
  failing on ``CREATE TABLE users``. Existing tables are never altered; a
  partially present schema only gets the missing tables (``IF NOT EXISTS``).
  Sibling workers racing on a fresh file serialise on ``BEGIN IMMEDIATE``.
* Sharing the file with the Go backend: Python uses it the way the legacy
  does. The legacy opens it with no busy timeout and, at every boot, sets
  ``journal_mode=DELETE`` and ``synchronous=FULL`` and exits if that fails --
  which it does while another process keeps the file open in WAL mode. So,
  by default (``JUNJO_SQLITE_JOURNAL_MODE=delete``):

  - the journal mode is never changed, with one exception: a file found in
    WAL mode (left by an older gateway) is switched back to DELETE, the
    legacy's own mode, once when the engine is created (retried while
    another connection holds it; logged either way);
  - every connection uses ``synchronous=FULL`` (the legacy's durability) and
    a 5 s busy timeout on Python's side only (Go's requests still fail at
    once when Python holds a lock, as they do against Go's own connections);
  - locks are held as briefly as SQLite allows, because every Go request
    that meets one fails: connections run in driver autocommit, every write
    is a single statement (its own transaction, committed inside SQLite, no
    BEGIN/COMMIT round trip through Python), reads fetch every row and close
    the cursor before returning, and no pooled connection is ever left inside
    a transaction between requests. See docs/deploy.md, "Sharing the SQLite
    file with Go", for the measured contention.

  ``JUNJO_SQLITE_JOURNAL_MODE=wal`` (with ``synchronous=NORMAL``) is an
  opt-in for when Python owns the file alone, after the Go backend is
  retired: a running Go backend cannot restart while Python holds a WAL file.
* Queries are the legacy sqlc queries, so ordering (ties included) matches.
  ``gateway db copy`` (:mod:`services.common.dbcopy`) moves the rows between
  the two databases.

Everything here is blocking: from async code call ``await db.run(db.method, ...)``
(a worker thread, via ``starlette.concurrency.run_in_threadpool``).
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool

from services.registry import in_dry_run

from .settings import DEFAULT_SQLITE_JOURNAL_MODE, Settings, SettingsError, get_settings, parse_journal_mode

log = logging.getLogger(__name__)


T = TypeVar("T")

# Python's own wait for a lock held by Go or a sibling worker (Go has none).
BUSY_TIMEOUT_MS = 5000
# synchronous per journal mode: the legacy's FULL with its rollback journal;
# NORMAL is WAL's usual pairing (still crash-safe, an fsync per checkpoint).
SYNCHRONOUS = {"delete": "FULL", "wal": "NORMAL"}
# How long engine creation keeps trying to switch the journal mode while other
# connections (a sibling worker checking the same file) hold it.
JOURNAL_SWITCH_SECONDS = 10.0

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

# The same tables on PostgreSQL. ``BY DEFAULT`` identities accept the explicit
# ids `gateway db copy` brings over (it then advances the sequences).
# created_at has whole seconds, as SQLite's CURRENT_TIMESTAMP: the API answers
# "2025-06-01T12:30:45Z" on both, and ties are as frequent, broken the same way.
# api_keys.seq stands in for SQLite's rowid: the insertion order that breaks
# created_at ties in the legacy list query. Not unique: copied rows keep the
# source's rowids beside rows made here.
POSTGRES_SCHEMA = (
    """CREATE TABLE users (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT date_trunc('second', now())
)""",
    "CREATE INDEX idx_users_email ON users (email)",
    """CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT date_trunc('second', now()),
  seq BIGINT GENERATED BY DEFAULT AS IDENTITY NOT NULL
)""",
    """CREATE TABLE poller_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_key BYTEA
)""",
)
SCHEMAS = {"sqlite": MIGRATION_00001, "postgresql": POSTGRES_SCHEMA}
SUPPORTED_DIALECTS = tuple(SCHEMAS)
# pg_advisory_xact_lock key serialising schema creation between replicas ("junjo").
SCHEMA_LOCK_KEY = 0x6A756E6A6F

# Queries whose text differs by dialect; every other query is the legacy's, verbatim.
QUERIES: dict[str, dict[str, str]] = {
    "sqlite": {
        "list_users": "SELECT id, email, '' AS password_hash, created_at FROM users ORDER BY created_at DESC",
        "list_api_keys": "SELECT * FROM api_keys ORDER BY created_at DESC",
    },
    "postgresql": {
        "list_users": "SELECT id, email, '' AS password_hash, created_at FROM users "
                      "ORDER BY created_at DESC, id",
        "list_api_keys": "SELECT id, key, name, created_at FROM api_keys ORDER BY created_at DESC, seq",
    },
}
# Statements run first, in the same transaction, on a server database.
# SHARE ROW EXCLUSIVE conflicts with itself and with every INSERT: two
# "first users" can't both see an empty table (READ COMMITTED would let them).
FIRST_USER_LOCK = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"

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
    """A TIMESTAMP column as Go's sqlite driver reads it (naive text = UTC);
    a PostgreSQL TIMESTAMPTZ in UTC, whatever the session's time zone."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def rfc3339(dt: datetime) -> str:
    """Go's ``time.Time`` JSON form (RFC 3339 with nanoseconds trimmed, ``Z`` for UTC)."""
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
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


def make_engine(url: str, journal_mode: str = DEFAULT_SQLITE_JOURNAL_MODE) -> Engine:
    """An engine on ``url``. SQLite: driver autocommit, ``synchronous`` and a
    busy timeout per connection, and the file's journal mode settled once
    (see the module docstring); ``journal_mode`` is checked even for other
    databases so a typo never goes unnoticed."""
    mode = parse_journal_mode(journal_mode)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DIALECTS:
        raise SettingsError(f"DATABASE_URL: {backend!r} databases are not supported; use sqlite:///PATH "
                          "or postgresql+psycopg://USER:PASSWORD@HOST/DB")
    if backend != "sqlite":
        # connect_timeout: a database that is down fails a request in seconds, not minutes.
        return create_engine(url, pool_pre_ping=True, hide_parameters=True,
                             connect_args={"connect_timeout": 10, "application_name": "junjo-gateway"})
    # hide_parameters: SQLAlchemy's error texts would otherwise quote bound
    # values — API keys, emails, password hashes — into logs and answers.
    # AUTOCOMMIT: pysqlite would otherwise send BEGIN before each write and
    # keep the lock until Python gets round to COMMIT (a GIL switch can make
    # that milliseconds); in autocommit SQLite commits inside the statement
    # (a RETURNING one once its rows are fetched, which _write does at once;
    # measured: dropping RETURNING for a read-back by rowid made Go fail more).
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        isolation_level="AUTOCOMMIT",
        hide_parameters=True,
    )
    synchronous = SYNCHRONOUS[mode]

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute(f"PRAGMA synchronous = {synchronous}")
        cur.close()

    if parsed.database and parsed.database != ":memory:":
        settled = settle_journal_mode(engine, mode)
        log.info("SQLite %s: journal_mode=%s, synchronous=%s, busy_timeout=%d ms (Python side) "
                 "[JUNJO_SQLITE_JOURNAL_MODE=%s%s]", parsed.database, settled, synchronous,
                 BUSY_TIMEOUT_MS, mode,
                 ": the legacy's mode, safe to share with the Go backend" if mode == "delete"
                 else ": only for a file the Go backend no longer opens")
    return engine


def journal_mode_of(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()


def settle_journal_mode(engine: Engine, wanted: str, *,
                        budget: float = JOURNAL_SWITCH_SECONDS) -> str:
    """Put the file in ``wanted`` journal mode when it needs it; return the mode
    it is in afterwards.

    ``delete`` (the default) only ever undoes WAL -- a file an older gateway
    left in WAL mode, which stops the Go backend from booting -- and leaves
    any other mode alone. ``wal`` is the explicit opt-in. Leaving WAL needs
    every other connection to the file closed, and SQLite does not wait for
    that (no busy handler), so this retries with jitter for ``budget``
    seconds, closing its own connection between tries so that a sibling
    worker doing the same can finish. Failing that, it logs why and goes on:
    the routes still work, only a Go restart would fail."""
    current = journal_mode_of(engine)
    if current == wanted or (wanted == "delete" and current != "wal"):
        engine.dispose()
        return current
    deadline = time.monotonic() + budget
    error: Exception | None = None
    while True:
        try:
            with engine.connect() as conn:
                current = str(conn.exec_driver_sql(f"PRAGMA journal_mode = {wanted.upper()}")
                              .scalar()).lower()
            error = None
        except OperationalError as exc:  # "database is locked": another connection is open
            error = exc
        finally:
            engine.dispose()  # never our own connection in the way of the next try (or a sibling)
        if current == wanted:
            log.warning("SQLite journal_mode: %s -> %s (%s)", "wal" if wanted == "delete" else current,
                        wanted, "restored the Go backend's rollback journal, which an older gateway "
                        "had switched to WAL" if wanted == "delete" else "JUNJO_SQLITE_JOURNAL_MODE=wal")
            return current
        if time.monotonic() >= deadline:
            break
        time.sleep(random.uniform(0.02, 0.2))
    reason = getattr(error, "orig", None) or error or f"SQLite kept journal_mode={current}"
    log.error("SQLite journal_mode is %s, wanted %s, and could not be switched within %.0f s: %s. "
              "Another process keeps the file open%s.", current, wanted, budget, reason,
              " in WAL mode (an older gateway, or a Go backend that started while one ran); "
              "the Go backend cannot restart until it is switched back. Stop the gateway, "
              "restart the Go backend (its boot sets DELETE), then start the gateway"
              if wanted == "delete" else "")
    return current


def ensure_schema(engine: Engine) -> None:
    """Create the legacy schema when missing; never alter existing tables.

    Several workers (or replicas) may find it missing at once: on SQLite they
    serialise on ``BEGIN IMMEDIATE``, on PostgreSQL on an advisory lock, and
    re-check inside it."""
    if engine.dialect.name == "sqlite":
        _ensure_sqlite_schema(engine)
    else:
        _ensure_server_schema(engine)


def _sqlite_tables(conn: Connection) -> set[str]:
    return {r[0] for r in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table'").all()}


def _ensure_sqlite_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        # A plain read first: on an existing file no write lock is ever taken
        # (a write lock at boot would fail a Go request).
        if set(LEGACY_TABLES) <= _sqlite_tables(conn):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy timeout) for a sibling creating it
        try:
            _create_missing(conn, _sqlite_tables(conn))
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


def _ensure_server_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        if set(LEGACY_TABLES) <= set(inspect(conn).get_table_names()):
            return  # the usual case: no lock taken
    with engine.begin() as conn:  # DDL is transactional here: all tables or none
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        _create_missing(conn, set(inspect(conn).get_table_names()))


def _create_missing(conn: Connection, existing: set[str]) -> None:
    """The migration (and, on SQLite, its goose record) on an empty database,
    else only the legacy tables that are missing."""
    schema = SCHEMAS[conn.dialect.name]
    if not existing.intersection(LEGACY_TABLES):
        for statement in schema:
            conn.execute(text(statement))
        if conn.dialect.name == "sqlite" and "goose_db_version" not in existing:
            conn.execute(text(GOOSE_TABLE))
            conn.execute(text(
                "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1)"
            ))
        return
    for statement in schema:
        if statement.startswith("CREATE TABLE "):
            name = statement.split()[2]
            if name not in existing:
                conn.execute(text(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)))


def _user(row: Any) -> User:
    return User(int(row.id), row.email, row.password_hash, parse_timestamp(row.created_at))


def _api_key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.key, row.name, parse_timestamp(row.created_at))


@dataclass(frozen=True)
class Written:
    """What a write statement gave back: its RETURNING rows and its row count."""
    rows: list[Any]
    rowcount: int


class Database:
    """Repository over the legacy tables. Methods block: use :meth:`run` from async code.

    Every method is one SQL statement (``delete_api_key``'s caller does a
    lookup first), so on SQLite each runs as its own autocommit transaction;
    reads fetch all their rows before the connection goes back to the pool.
    See the module docstring for why."""

    def __init__(self, engine: Engine, *, create_schema: bool = True) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._queries = QUERIES[engine.dialect.name]
        # SQLite: one statement at a time per process, so this process's
        # threads never queue for the file inside SQLite (a writer queued
        # behind a reader would hold the PENDING lock meanwhile).
        self._serial: Any = threading.Lock() if self._sqlite else nullcontext()
        if create_schema:
            ensure_schema(engine)

    @classmethod
    def from_url(cls, url: str, journal_mode: str = DEFAULT_SQLITE_JOURNAL_MODE) -> Database:
        return cls(make_engine(url, journal_mode))

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking ``func(*args)`` in a worker thread."""
        return await run_in_threadpool(func, *args)

    def dispose(self) -> None:
        self.engine.dispose()

    def _on_connection(self, statement: Callable[[Connection], T]) -> T:
        """Run ``statement`` on a pooled connection, one at a time per process
        on SQLite (a lock held by Go is waited out by the busy timeout)."""
        with self._serial, self.engine.connect() as conn:
            return statement(conn)

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every row of a query, fetched before the connection is returned: the
        read lock (SHARED, which makes a Go commit fail) ends with the last row."""
        return self._on_connection(lambda conn: list(conn.execute(text(sql), params or {}).all()))

    def _write(self, sql: str, params: dict[str, Any], *, server_lock: str | None = None) -> Written:
        """One write statement, committed by itself (SQLite autocommit: inside
        SQLite, no BEGIN/COMMIT round trip through Python). In a dry run (a
        shadowed write replayed to Python) it runs inside BEGIN … ROLLBACK so
        nothing commits. On a server database ``server_lock`` runs first, in
        the same transaction (SQLite's write lock already serialises writes)."""
        dry_run = in_dry_run()

        def execute(conn: Connection) -> Written:
            result = conn.execute(text(sql), params)
            return Written(list(result.all()) if result.returns_rows else [], result.rowcount)

        def statement(conn: Connection) -> Written:
            if not self._sqlite:
                with conn.begin() as transaction:
                    if server_lock:
                        conn.execute(text(server_lock))
                    written = execute(conn)
                    if dry_run:
                        transaction.rollback()
                return written
            if not dry_run:
                return execute(conn)
            conn.exec_driver_sql("BEGIN")
            try:
                return execute(conn)
            finally:
                conn.exec_driver_sql("ROLLBACK")

        try:
            return self._on_connection(statement)
        except IntegrityError as exc:
            raise DuplicateError(str(exc.orig)) from exc

    # --- users ------------------------------------------------------------

    def count_users(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM users")[0][0])

    def has_users(self) -> bool:
        return self.count_users() > 0

    def get_user_by_email(self, email: str) -> User | None:
        rows = self._rows("SELECT * FROM users WHERE email = :email LIMIT 1", {"email": email})
        return _user(rows[0]) if rows else None

    def create_user(self, email: str, password_hash: str) -> User:
        """Insert a user; :class:`DuplicateError` when the email exists."""
        written = self._write("INSERT INTO users (email, password_hash) VALUES (:e, :h) RETURNING *",
                              {"e": email, "h": password_hash})
        return _user(written.rows[0])

    def create_first_user(self, email: str, password_hash: str) -> User | None:
        """Insert only when the table is empty (one atomic statement); None otherwise."""
        written = self._write(
            "INSERT INTO users (email, password_hash) SELECT :e, :h "
            "WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING *",
            {"e": email, "h": password_hash}, server_lock=FIRST_USER_LOCK,
        )
        return _user(written.rows[0]) if written.rows else None

    def list_users(self) -> list[User]:
        """Newest first (the legacy ``ListUsers`` query; ties in insertion order, as SQLite scans)."""
        return [_user(r) for r in self._rows(self._queries["list_users"])]

    def delete_user(self, user_id: int) -> None:
        self._write("DELETE FROM users WHERE id = :id", {"id": user_id})

    # --- api_keys ---------------------------------------------------------

    def create_api_key(self, key_id: str, key: str, name: str) -> ApiKey:
        """Insert an API key; :class:`DuplicateError` when the id or key exists."""
        written = self._write("INSERT INTO api_keys (id, key, name) VALUES (:i, :k, :n) "
                              "RETURNING id, key, name, created_at",
                              {"i": key_id, "k": key, "n": name})
        return _api_key(written.rows[0])

    def get_api_key(self, key: str) -> ApiKey | None:
        """Lookup by key value (exact, case-sensitive), as ValidateApiKey does."""
        rows = self._rows("SELECT * FROM api_keys WHERE key = :k LIMIT 1", {"k": key})
        return _api_key(rows[0]) if rows else None

    def list_api_keys(self) -> list[ApiKey]:
        """Newest first (the legacy ``ListAPIKeys`` query; ties in insertion order)."""
        return [_api_key(r) for r in self._rows(self._queries["list_api_keys"])]

    def delete_api_key(self, key: str) -> bool:
        """Delete by key value; True when a row was removed."""
        return self._write("DELETE FROM api_keys WHERE key = :k", {"k": key}).rowcount > 0


_lock = threading.Lock()
_database: Database | None = None


def get_database() -> Database:
    """The process-wide database built from the environment (created on first use)."""
    global _database
    with _lock:
        if _database is None:
            settings = get_settings()
            _database = Database.from_url(database_url(settings), settings.sqlite_journal_mode)
        return _database


def open_at_startup() -> None:
    """Service startup hook: open the shared database when the gateway starts,
    not at the first request, so a file an older gateway left in WAL mode is
    given back to the Go backend (DELETE) at once and the mode is logged."""
    get_database()


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
