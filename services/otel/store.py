"""The DuckDB file: the legacy ``spans`` / ``state_patches`` schema plus our cursor.

* Its own file: env ``OTEL_DUCKDB_PATH`` (default ``data/otel_python.duckdb``),
  never the legacy's ``/dbdata/duckdb/otel_data.db`` (DuckDB allows one writing
  process per file, and the legacy poller holds that one).
* One process opens it (the owner, see owner.py). Inside it every thread gets
  its own cursor; writes and reads run in worker threads, never on the event
  loop, and at most ``OTEL_DB_CONCURRENCY`` (default 4) queries run at once.
* :meth:`SpanStore.ingest` writes a batch of rows, its state patches and the
  poller's cursor in ONE transaction: a restart neither loses nor repeats a batch.
  Spans are ``INSERT OR IGNORE`` (the first version of a (trace_id, span_id) wins).
* Timestamps are stored from integer µs with ``make_timestamp`` and read back
  with ``epoch_us``, so no time-zone setting can shift them.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from services.common.settings import get_otel_settings

from . import gojson
from .rows import JSON_COLUMNS, PATCH_COLUMNS, SPAN_COLUMNS, TIME_COLUMNS, SpanRow

log = logging.getLogger("services.otel.store")

LEGACY_PATH = "/dbdata/duckdb/otel_data.db"
ROOT_LIMIT = 500

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spans (
  trace_id VARCHAR(32) NOT NULL,
  span_id VARCHAR(16) NOT NULL,
  parent_span_id VARCHAR(16),
  service_name VARCHAR NOT NULL,
  name VARCHAR,
  kind VARCHAR,
  start_time TIMESTAMPTZ,
  end_time TIMESTAMPTZ,
  status_code VARCHAR,
  status_message VARCHAR,
  attributes_json JSON,
  events_json JSON,
  links_json JSON,
  trace_flags INTEGER,
  trace_state VARCHAR,
  junjo_id VARCHAR,
  junjo_parent_id VARCHAR,
  junjo_span_type VARCHAR,
  junjo_wf_state_start JSON,
  junjo_wf_state_end JSON,
  junjo_wf_graph_structure JSON,
  junjo_wf_store_id VARCHAR,
  PRIMARY KEY (trace_id, span_id)
)""",
    """CREATE TABLE IF NOT EXISTS state_patches (
  patch_id VARCHAR PRIMARY KEY,
  service_name VARCHAR NOT NULL,
  trace_id VARCHAR(32) NOT NULL,
  span_id VARCHAR(16) NOT NULL,
  workflow_id VARCHAR NOT NULL,
  node_id VARCHAR NOT NULL,
  event_time TIMESTAMPTZ NOT NULL,
  patch_json JSON NOT NULL,
  patch_store_id VARCHAR NOT NULL,
  FOREIGN KEY (trace_id, span_id) REFERENCES spans (trace_id, span_id)
)""",
    # Our own cursor (the legacy keeps its cursor in SQLite; ours must commit
    # with the batch, so it lives beside the spans).
    """CREATE TABLE IF NOT EXISTS poller_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_key BLOB
)""",
)

_SELECT_COLUMNS = ", ".join(
    f"epoch_us({c})" if c in TIME_COLUMNS else f"{c}::VARCHAR" if c in JSON_COLUMNS else c
    for c in SPAN_COLUMNS
)

def _unnest_select(columns: Sequence[str], types: dict[str, str]) -> str:
    """``SELECT unnest(?::T[]), ...``: one list parameter per column, zipped by
    DuckDB — ~15x faster than multi-row VALUES with a parameter per cell."""
    return "SELECT " + ", ".join(
        "make_timestamp(unnest(?::BIGINT[]))" if types[c] == "TIME" else f"unnest(?::{types[c]}[])"
        for c in columns)


_SPAN_TYPES = {c: "TIME" if c in TIME_COLUMNS else "VARCHAR" for c in SPAN_COLUMNS}
_SPAN_TYPES["trace_flags"] = "INTEGER"
_PATCH_TYPES = {c: "VARCHAR" for c in PATCH_COLUMNS}
_PATCH_TYPES["event_time"] = "TIME"
INSERT_SPANS = "INSERT OR IGNORE INTO spans " + _unnest_select(SPAN_COLUMNS, _SPAN_TYPES)
INSERT_PATCHES = "INSERT OR IGNORE INTO state_patches " + _unnest_select(PATCH_COLUMNS, _PATCH_TYPES)

ROOTS = (f"SELECT {_SELECT_COLUMNS} FROM spans WHERE service_name = ? AND parent_span_id IS NULL "
         f"ORDER BY start_time DESC LIMIT {ROOT_LIMIT}")
ROOTS_LLM = (f"SELECT {_SELECT_COLUMNS} FROM spans WHERE service_name = ? AND parent_span_id IS NULL "
             "AND trace_id IN (SELECT trace_id FROM spans "
             "WHERE attributes_json ->> 'openinference.span.kind' = 'LLM') "
             f"ORDER BY start_time DESC LIMIT {ROOT_LIMIT}")
NESTED = f"SELECT {_SELECT_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_time DESC"
ONE = f"SELECT {_SELECT_COLUMNS} FROM spans WHERE trace_id = ? AND span_id = ? LIMIT 1"
WORKFLOWS = (f"SELECT {_SELECT_COLUMNS} FROM spans WHERE junjo_span_type = 'workflow' "
             "AND service_name = ? ORDER BY start_time DESC")
SERVICE_NAMES = "SELECT DISTINCT service_name FROM spans ORDER BY service_name ASC"

# route name → (sql, param names); the answers a route gives, see answer().
QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "service_names": (SERVICE_NAMES, ()),
    "root_spans": (ROOTS, ("serviceName",)),
    "root_spans_filtered": (ROOTS_LLM, ("serviceName",)),
    "nested_spans": (NESTED, ("traceId",)),
    "span": (ONE, ("traceId", "spanId")),
    "workflow_spans": (WORKFLOWS, ("serviceName",)),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def duckdb_path() -> str:
    path = get_otel_settings().duckdb_path
    if os.path.abspath(path) == LEGACY_PATH:
        raise ValueError(f"OTEL_DUCKDB_PATH must not be the legacy's file {LEGACY_PATH}")
    return path


def rfc3339nano(us: int | None) -> str | None:
    """Go's RFC3339Nano in UTC at µs precision: fraction trimmed, ``Z``."""
    if us is None:
        return None
    try:
        dt = _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return None
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += ("." + f"{dt.microsecond:06d}").rstrip("0")
    return text + "Z"


class QueryError(Exception):
    """A DuckDB error while answering a route (→ 500 database query failed)."""


class SpanStore:
    def __init__(self, path: str, *, concurrency: int | None = None) -> None:
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._conn = duckdb.connect(path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        n = concurrency or get_otel_settings().db_concurrency
        self._slots = threading.BoundedSemaphore(max(1, n))
        cur = self._cursor()
        for statement in SCHEMA:
            cur.execute(statement)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._conn.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.cur = cur
        return cur

    def close(self) -> None:
        try:
            self._conn.execute("CHECKPOINT")
        except duckdb.Error:
            pass
        self._conn.close()

    # --- the poller's side -------------------------------------------------

    def cursor_key(self) -> bytes | None:
        row = self._cursor().execute("SELECT last_key FROM poller_state WHERE id = 1").fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def ingest(self, rows: Sequence[SpanRow], last_key: bytes) -> int:
        """Insert ``rows`` and move the cursor to ``last_key``, all or nothing.

        Returns how many span rows were new. Should DuckDB reject a row that our
        mapping let through, the batch is retried row by row so the one bad span
        is logged and dropped instead of blocking the cursor (and every span
        after it) forever.
        """
        unique: dict[tuple[str, str], SpanRow] = {}
        for row in rows:
            unique.setdefault(row.key, row)  # the first version wins, within a batch too
        spans = list(unique.values())
        try:
            return self._commit(spans, last_key)
        except duckdb.ConversionException as exc:
            log.error("DuckDB rejected a batch of %d spans (%s); retrying span by span", len(spans), exc)
        new = 0
        for row in spans:
            try:
                new += self._commit([row], None)
            except duckdb.ConversionException as exc:
                log.error("span %s/%s dropped: DuckDB rejects it: %s", *row.key, exc)
        self._commit([], last_key)
        return new

    def _commit(self, spans: list[SpanRow], last_key: bytes | None) -> int:
        patches = [p for row in spans for p in row.patches]
        with self._write_lock, self._slots:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                before = _count(cur)
                self._insert(cur, INSERT_SPANS, [r.values for r in spans])
                self._insert(cur, INSERT_PATCHES, patches)
                if last_key is not None:
                    cur.execute("INSERT INTO poller_state (id, last_key) VALUES (1, ?) "
                                "ON CONFLICT (id) DO UPDATE SET last_key = excluded.last_key",
                                [last_key])
                after = _count(cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return after - before

    @staticmethod
    def _insert(cur: duckdb.DuckDBPyConnection, sql: str, rows: list[tuple]) -> None:
        if rows:
            cur.execute(sql, [list(column) for column in zip(*rows)])

    # --- the routes' side ------------------------------------------------------

    def fetch(self, sql: str, params: Iterable[Any]) -> list[tuple]:
        with self._slots:
            try:
                return self._cursor().execute(sql, list(params)).fetchall()
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc

    def answer(self, route: str, params: dict[str, str], pretty: bool = False) -> bytes:
        """The response body a route sends (Go JSON, trailing newline)."""
        sql, names = QUERIES[route]
        rows = self.fetch(sql, [params[n] for n in names])
        if route == "service_names":
            return gojson.dumps([r[0] for r in rows], pretty=pretty)
        flags = gojson.new_flags()
        spans = [row_to_json(r, flags) for r in rows]
        if route == "span":
            return gojson.dumps(spans[0] if spans else None, pretty=pretty, odd_floats=flags.odd)
        return gojson.dumps(spans, pretty=pretty, odd_floats=flags.odd)

    def count(self, table: str = "spans") -> int:
        assert table in ("spans", "state_patches")
        return self.fetch(f"SELECT count(*) FROM {table}", ())[0][0]

    def dump_rows(self) -> list[dict[str, Any]]:
        """Every span as the JSON object a route serves (for fixtures and tests)."""
        flags = gojson.new_flags()
        return [row_to_json(r, flags) for r in self.fetch(f"SELECT {_SELECT_COLUMNS} FROM spans", ())]


def _count(cur: duckdb.DuckDBPyConnection) -> int:
    (n,) = cur.execute("SELECT count(*) FROM spans").fetchone() or (0,)
    return int(n)


def row_to_json(row: tuple, flags: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col, value in zip(SPAN_COLUMNS, row):
        if col in TIME_COLUMNS:
            value = rfc3339nano(value)
        elif col in JSON_COLUMNS:
            value = gojson.parse_as_go(value, flags)
        out[col] = value
    return out
