"""``gateway db copy`` and ``gateway db verify``: move the legacy rows between databases.

SQLite → PostgreSQL once the Go backend is retired (it only speaks SQLite), and
PostgreSQL → SQLite to roll that back. Users (bcrypt hashes as they are, ids and
``created_at`` kept), API keys and the poller cursor (``poller_state``).

* **Source held still.** A SQLite source is opened without ever being created
  or written, and held with ``BEGIN IMMEDIATE`` (SQLite's write lock) from the
  first read to the end of the verification: a Go backend still running on
  the file gets ``database is locked`` for its writes (it has no busy timeout)
  instead of writing rows the copy would miss, and a gateway on it waits, then
  fails its write. If another process is in a write transaction, the copy
  waits ``lock_wait`` seconds for it and then refuses, saying so. A
  PostgreSQL source is locked ``IN SHARE MODE`` (writers wait) in one
  repeatable-read snapshot.
* **Batches, committed one at a time**, each with its progress row
  (``db_copy_progress`` in the *target*), so an interrupted copy resumes after
  the last committed batch; a copy that finished starts over on the next run.
* **Idempotent upserts** on the primary key: a row already there and equal is
  left alone (counted "unchanged"), a different one is updated, nothing is
  ever duplicated. A row whose email (or API key) belongs to a *different* id
  in the target is a conflict: the copy stops before writing that batch and
  names the row.
* **Sequences** are advanced past the highest id the source ever handed out
  (SQLite's ``sqlite_sequence`` included), so ids are never reused.
* **Verification** at the end: per table, the row count and a SHA-256 over the
  rows in primary-key order (bytes order on both sides), compared.
* ``dry_run``: reads both sides, reports what would be inserted, updated or
  left alone, writes nothing (not even the schema or the progress row).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from .db import LEGACY_TABLES, ensure_schema, make_engine, parse_timestamp

DEFAULT_BATCH = 500
DEFAULT_LOCK_WAIT = 10.0
RUN = "*"  # the progress row of the run as a whole

PROGRESS_TABLE = """CREATE TABLE IF NOT EXISTS db_copy_progress (
  source TEXT NOT NULL,
  table_name TEXT NOT NULL,
  after_key BIGINT NOT NULL,
  copied BIGINT NOT NULL,
  finished INTEGER NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (source, table_name)
)"""


class CopyRefused(RuntimeError):
    """The copy cannot (or must not) go on; the message says why and what to do."""


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # primary key: upsert target, verification order
    columns: tuple[str, ...]  # what is copied
    order: dict[str, str]  # per dialect: the column holding insertion order (batches follow it)
    unique: tuple[str, ...] = ()  # other unique columns


TABLES = (
    Table("users", "id", ("id", "email", "password_hash", "created_at"),
          {"sqlite": "id", "postgresql": "id"}, ("email",)),
    # SQLite's rowid is the legacy list's tie order; PostgreSQL keeps it in seq.
    Table("api_keys", "id", ("id", "key", "name", "created_at"),
          {"sqlite": "rowid", "postgresql": "seq"}, ("key",)),
    Table("poller_state", "id", ("id", "last_key"), {"sqlite": "id", "postgresql": "id"}),
)
assert tuple(t.name for t in TABLES) == LEGACY_TABLES


@dataclass
class TableResult:
    table: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    resumed_after: int | None = None  # the batch key an interrupted run had reached
    sequence: str | None = None  # what happened to the id sequence

    def line(self, dry_run: bool) -> str:
        verb = "would be " if dry_run else ""
        out = (f"{self.table}: {self.inserted} {verb}inserted, {self.updated} {verb}updated, "
               f"{self.unchanged} unchanged")
        if self.resumed_after is not None:
            out += f" (resumed after {self.resumed_after})"
        return out + (f"; {self.sequence}" if self.sequence else "")


@dataclass(frozen=True)
class Check:
    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256

    def line(self) -> str:
        if self.ok:
            return f"{self.table}: {self.source_rows} rows, sha256 {self.source_sha256[:16]} on both: OK"
        return (f"{self.table}: MISMATCH: source {self.source_rows} rows sha256 {self.source_sha256[:16]}, "
                f"target {self.target_rows} rows sha256 {self.target_sha256[:16]}")


@dataclass
class Report:
    source: str
    target: str
    dry_run: bool
    tables: list[TableResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


# --- URLs and connections ------------------------------------------------------------

def normalise_url(value: str) -> str:
    """A SQLAlchemy URL; a bare path means a SQLite file."""
    if "://" not in value:
        return f"sqlite:///{os.path.abspath(value)}"
    return value


def describe(url: str) -> str:
    """The URL without its password (for output and the progress rows)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///{os.path.abspath(parsed.database or '')}"
    return parsed.render_as_string(hide_password=True)


def _source_engine(url: str, lock_wait: float) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return make_engine(url)
    path = parsed.database or ""
    if not path or path == ":memory:" or not os.path.isfile(path):
        raise CopyRefused(f"no SQLite file at {path!r}: nothing to copy from")
    # mode=rw: never create the file; the journal mode is left as it is.
    return create_engine(f"sqlite:///file:{os.path.abspath(path)}?mode=rw&uri=true", isolation_level="AUTOCOMMIT",
                         connect_args={"timeout": lock_wait, "check_same_thread": False})


@contextmanager
def _held_source(engine: Engine, *, lock: bool, lock_wait: float) -> Iterator[Connection]:
    """One connection on the source, holding it still for the whole copy."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if lock else "BEGIN")
            except OperationalError as exc:
                raise CopyRefused(
                    f"the source is being written right now and its write lock was not free within "
                    f"{lock_wait:g} s ({exc.orig}). Is the Go backend (or a gateway using this file) still "
                    "running? Stop it, then copy again.") from exc
            try:
                if lock:  # the shared lock starts with the first read: take it now
                    conn.exec_driver_sql("SELECT COUNT(*) FROM sqlite_master").all()
                yield conn
            finally:
                conn.exec_driver_sql("ROLLBACK")  # nothing was written: this only releases the lock
            return
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if lock:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_wait * 1000)}ms'")
                try:
                    conn.exec_driver_sql("LOCK TABLE users, api_keys, poller_state IN SHARE MODE")
                except OperationalError as exc:
                    raise CopyRefused(f"could not lock the source's tables within {lock_wait:g} s: "
                                      f"{exc.orig}") from exc
            yield conn


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    """One target transaction on an autocommit connection (see :func:`_target`)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.dialect.name == "sqlite" else "BEGIN")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


@contextmanager
def _target(engine: Engine) -> Iterator[Connection]:
    """The target connection in autocommit: reads see what is committed, and
    each batch is one explicit transaction (:func:`_transaction`)."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


# --- rows: read, compare, write ----------------------------------------------------------

def _canonical(table: Table, row: Any) -> tuple[Any, ...]:
    """A row as both databases agree on it (timestamps in UTC, bytes as hex)."""
    out: list[Any] = []
    for column in table.columns:
        value = getattr(row, column)
        if column == "created_at":
            value = parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif column == "id" and table.name != "api_keys":
            value = int(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).hex()
        out.append(value)
    return tuple(out)


def _target_value(dialect: str, column: str, value: Any) -> Any:
    if column == "created_at":
        stamp = parse_timestamp(value)
        if dialect == "postgresql":
            return stamp
        # The text Go's CURRENT_TIMESTAMP writes, which Go's driver reads back.
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + (f".{stamp.microsecond:06d}" if stamp.microsecond else "")
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _order_sql(conn: Connection, table: Table) -> str:
    key = table.key
    if conn.dialect.name == "postgresql" and table.name == "api_keys":
        return f'{key} COLLATE "C"'  # byte order, as SQLite's BINARY
    return key


def _existing_tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _batches(src: Connection, table: Table, after: int, size: int) -> Iterator[list[Any]]:
    order = table.order[src.dialect.name]
    sql = text(f"SELECT {order} AS batch_key, {', '.join(table.columns)} FROM {table.name} "
               f"WHERE {order} > :after ORDER BY {order} LIMIT :n")
    while True:
        rows = list(src.execute(sql, {"after": after, "n": size}).all())
        if not rows:
            return
        yield rows
        after = int(rows[-1].batch_key)


def _target_rows(dst: Connection, table: Table, column: str, values: list[Any]) -> list[Any]:
    sql = text(f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {column} IN :values")
    return list(dst.execute(sql.bindparams(bindparam("values", expanding=True)), {"values": values}).all())


def _classify(dst: Connection | None, table: Table, rows: list[Any]) -> tuple[list[Any], TableResult]:
    """The rows that must be written, and the counts; a conflict refuses."""
    result = TableResult(table.name)
    if dst is None:  # a target without the table: all new
        result.inserted = len(rows)
        return rows, result
    have = {_canonical(table, r)[0]: _canonical(table, r) for r in
            _target_rows(dst, table, table.key, [getattr(r, table.key) for r in rows])}
    for column in table.unique:
        index = table.columns.index(column)
        owner = {getattr(r, column): _canonical(table, r)[0] for r in rows}
        for other in _target_rows(dst, table, column, list(owner)):
            theirs = _canonical(table, other)
            if theirs[0] != owner[theirs[index]]:
                raise CopyRefused(
                    f"{table.name}: {column} {theirs[index]!r} is {table.key} {owner[theirs[index]]!r} in the "
                    f"source but {table.key} {theirs[0]!r} in the target. Rows were created in the target "
                    "before the copy; resolve it there (delete or rename that row), then copy again.")
    write = []
    for row in rows:
        mine = _canonical(table, row)
        there = have.get(mine[0])
        if there is None:
            result.inserted += 1
        elif there != mine:
            result.updated += 1
        else:
            result.unchanged += 1
            continue
        if dst.dialect.name == "postgresql" and any("\x00" in v for v in mine if isinstance(v, str)):
            raise CopyRefused(f"{table.name} {table.key} {mine[0]!r}: a value holds a NUL character, which "
                              "PostgreSQL text cannot store; rename that row in the source, then copy again")
        write.append(row)
    return write, result


def _upsert(dst: Connection, table: Table, rows: list[Any]) -> None:
    dialect = dst.dialect.name
    columns = list(table.columns)
    if table.name == "api_keys" and dialect == "postgresql":
        columns.append("seq")  # the source's insertion order
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != table.key)
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
           f"ON CONFLICT ({table.key}) DO UPDATE SET {updates}")
    params = []
    for row in rows:
        values = {c: _target_value(dialect, c, getattr(row, c)) for c in table.columns}
        if "seq" in columns:
            values["seq"] = int(row.batch_key)
        params.append(values)
    dst.execute(text(sql), params)


# --- sequences ------------------------------------------------------------------------

def _source_high_water(src: Connection, table: Table) -> int:
    """The highest id the source ever handed out (deleted ones included)."""
    if table.name == "users":
        high = int(src.execute(text("SELECT COALESCE(MAX(id), 0) FROM users")).scalar() or 0)
        if src.dialect.name == "sqlite":
            seq = src.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'users'")).scalar()
        else:
            seq = _sequence_value(src, "users", "id")
        return max(high, int(seq or 0))
    if table.name == "api_keys":
        order = table.order[src.dialect.name]
        return int(src.execute(text(f"SELECT COALESCE(MAX({order}), 0) FROM api_keys")).scalar() or 0)
    return 0


def _sequence_value(conn: Connection, table: str, column: str) -> int:
    """The last value a PostgreSQL identity handed out (0: none yet)."""
    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}).scalar()
    last, called = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
    return int(last) if called else 0


def _advance_sequence(dst: Connection, table: Table, high: int, dry_run: bool) -> str | None:
    column = {"users": "id", "api_keys": "seq"}.get(table.name)
    if column is None or high <= 0:
        return None
    if dst.dialect.name == "sqlite":
        if table.name != "users":
            return None  # rowids follow the insertion order by themselves
        current = int(dst.execute(text("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'users'"))
                      .scalar() or 0) if "sqlite_sequence" in _existing_tables(dst) else 0
        if current >= high:
            return None
        if not dry_run:
            dst.execute(text("DELETE FROM sqlite_sequence WHERE name = 'users'"))
            dst.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :h)"), {"h": high})
        return f"sqlite_sequence users {'would move' if dry_run else 'moved'} {current} → {high}"
    current = _sequence_value(dst, table.name, column)
    if current >= high:
        return None
    sequence = dst.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}).scalar()
    if not dry_run:
        dst.execute(text("SELECT setval(CAST(:s AS regclass), :h, true)"), {"s": sequence, "h": high})
    verb = "would move" if dry_run else "moved"
    return f"{sequence} {verb} {current} → {high} (next {table.name}.{column} {high + 1})"


# --- progress (in the target) -----------------------------------------------------------

def _progress(dst: Connection, source: str) -> dict[str, tuple[int, bool]]:
    if "db_copy_progress" not in _existing_tables(dst):
        return {}
    rows = dst.execute(text("SELECT table_name, after_key, finished FROM db_copy_progress WHERE source = :s"),
                       {"s": source}).all()
    return {r.table_name: (int(r.after_key), bool(r.finished)) for r in rows}


def _save_progress(dst: Connection, source: str, table: str, after: int, copied: int, finished: bool) -> None:
    dst.execute(text(
        "INSERT INTO db_copy_progress (source, table_name, after_key, copied, finished, updated_at) "
        "VALUES (:s, :t, :a, :c, :f, :u) ON CONFLICT (source, table_name) DO UPDATE SET "
        "after_key = excluded.after_key, copied = excluded.copied, finished = excluded.finished, "
        "updated_at = excluded.updated_at"),
        {"s": source, "t": table, "a": after, "c": copied, "f": int(finished),
         "u": datetime.now().astimezone().isoformat(timespec="seconds")})


# --- verification ----------------------------------------------------------------------

def table_digest(conn: Connection, table: Table) -> tuple[int, str]:
    """Row count and SHA-256 over the canonical rows in primary-key (byte) order."""
    if table.name not in _existing_tables(conn):
        return 0, hashlib.sha256().hexdigest()
    digest, count = hashlib.sha256(), 0
    sql = text(f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {_order_sql(conn, table)}")
    for row in conn.execute(sql):
        digest.update(repr(_canonical(table, row)).encode("utf-8"))
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def _checks(src: Connection, dst: Connection) -> list[Check]:
    checks = []
    for table in TABLES:
        (sn, sh), (tn, th) = table_digest(src, table), table_digest(dst, table)
        checks.append(Check(table.name, sn, tn, sh, th))
    return checks


# --- the commands --------------------------------------------------------------------------

def _engines(source_url: str, target_url: str, lock_wait: float) -> tuple[Engine, Engine, str, str]:
    source_url, target_url = normalise_url(source_url), normalise_url(target_url)
    source, target = describe(source_url), describe(target_url)
    if source == target:
        raise CopyRefused(f"--from and --to are the same database ({source})")
    return _source_engine(source_url, lock_wait), make_engine(target_url), source, target


def copy(source_url: str, target_url: str, *, dry_run: bool = False, batch_size: int = DEFAULT_BATCH,
         lock_wait: float = DEFAULT_LOCK_WAIT, on_batch: Callable[[str, int], None] | None = None) -> Report:
    """Copy (or, dry, compare) every legacy table; verify at the end.

    ``on_batch(table, rows_copied_so_far)`` is called after each committed batch
    (progress output; an exception there interrupts the copy as a crash would),
    and once as ``("(source)", 0)`` when a SQLite source's write lock is held."""
    src_engine, dst_engine, source, target = _engines(source_url, target_url, lock_wait)
    report = Report(source, target, dry_run)
    try:
        if not dry_run:
            ensure_schema(dst_engine)
        with _held_source(src_engine, lock=not dry_run, lock_wait=lock_wait) as src, _target(dst_engine) as dst:
            if src.dialect.name == "sqlite" and not dry_run and on_batch is not None:
                on_batch("(source)", 0)  # locked: tell the operator now, not at the end
            missing = set(LEGACY_TABLES) - _existing_tables(src)
            if missing:
                raise CopyRefused(f"the source has no {', '.join(sorted(missing))} table: not a junjo database")
            target_tables = _existing_tables(dst)
            if not dry_run:
                with _transaction(dst):
                    dst.execute(text(PROGRESS_TABLE))
            progress = _progress(dst, source)
            resuming = RUN in progress and not progress[RUN][1]
            if not dry_run and not resuming:
                with _transaction(dst):  # a new run: every table from the start
                    for name in (RUN, *LEGACY_TABLES):
                        _save_progress(dst, source, name, 0, 0, False)
            for table in TABLES:
                report.tables.append(_copy_table(src, dst, table, source, progress if resuming else {},
                                                 batch_size, dry_run, table.name in target_tables, on_batch))
            if not dry_run:
                report.checks = _checks(src, dst)
                with _transaction(dst):  # finished, verified or not: the next run is a full pass
                    _save_progress(dst, source, RUN, 0, 0, True)
    finally:
        src_engine.dispose()
        dst_engine.dispose()
    return report


def _copy_table(src: Connection, dst: Connection, table: Table, source: str,
                progress: dict[str, tuple[int, bool]], batch_size: int, dry_run: bool, target_has_table: bool,
                on_batch: Callable[[str, int], None] | None) -> TableResult:
    total = TableResult(table.name)
    after, finished = progress.get(table.name, (0, False))
    if after:
        total.resumed_after = after
    copied = 0
    if not finished:
        for rows in _batches(src, table, after, batch_size):
            write, counts = _classify(dst if target_has_table or not dry_run else None, table, rows)
            total.inserted += counts.inserted
            total.updated += counts.updated
            total.unchanged += counts.unchanged
            after, copied = int(rows[-1].batch_key), copied + len(rows)
            if dry_run:
                continue
            with _transaction(dst):
                if write:
                    _upsert(dst, table, write)
                _save_progress(dst, source, table.name, after, copied, False)
            if on_batch is not None:
                on_batch(table.name, copied)
    if dry_run:
        if target_has_table:
            total.sequence = _advance_sequence(dst, table, _source_high_water(src, table), True)
        return total
    with _transaction(dst):
        total.sequence = _advance_sequence(dst, table, _source_high_water(src, table), False)
        _save_progress(dst, source, table.name, after, copied, True)
    return total


def verify(source_url: str, target_url: str, *, lock_wait: float = DEFAULT_LOCK_WAIT) -> Report:
    """Counts and checksums of every legacy table on both sides (reads only)."""
    src_engine, dst_engine, source, target = _engines(source_url, target_url, lock_wait)
    report = Report(source, target, dry_run=True)
    try:
        with _held_source(src_engine, lock=False, lock_wait=lock_wait) as src, _target(dst_engine) as dst:
            report.checks = _checks(src, dst)
    finally:
        src_engine.dispose()
        dst_engine.dispose()
    return report


def print_report(report: Report, out: Callable[[str], None] = print, elapsed: float | None = None) -> None:
    for note in report.notes:
        out(f"  {note}")
    for result in report.tables:
        out(f"  {result.line(report.dry_run)}")
    for check in report.checks:
        out(f"  verify {check.line()}")
    if elapsed is not None:
        out(f"  {elapsed:.2f} s")


def main_copy(source: str, target: str, *, dry_run: bool, batch_size: int, lock_wait: float) -> int:
    started = time.monotonic()
    try:
        head = f"{describe(normalise_url(source))} → {describe(normalise_url(target))}"
    except Exception as exc:  # a malformed URL: say so, no traceback
        print(f"refused: {exc}")
        return 2
    print(f"{'dry run (nothing is written)' if dry_run else 'copy'}: {head}", flush=True)

    def progress(table: str, copied: int) -> None:
        if table == "(source)":
            print("  source held with SQLite's write lock (BEGIN IMMEDIATE): writes to it fail until the "
                  "copy ends", flush=True)
        else:
            print(f"  {table}: {copied} rows copied", flush=True)

    try:
        report = copy(source, target, dry_run=dry_run, batch_size=batch_size, lock_wait=lock_wait,
                      on_batch=progress)
    except CopyRefused as exc:
        print(f"refused: {exc}")
        return 2
    print_report(report, elapsed=time.monotonic() - started)
    if dry_run:
        return 0
    if not report.verified:
        print("verification FAILED: the target differs from the source (see above). Rows only the target has "
              "are never deleted by the copy; a changed row is fixed by copying again.")
        return 1
    print("verified: the target holds exactly the source's rows")
    return 0


def main_verify(source: str, target: str) -> int:
    try:
        print(f"verify: {describe(normalise_url(source))} → {describe(normalise_url(target))}")
        report = verify(source, target)
    except CopyRefused as exc:
        print(f"refused: {exc}")
        return 2
    print_report(report)
    return 0 if report.verified else 1
