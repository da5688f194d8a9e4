"""The poller: ingestion's WAL (``ReadSpans``) → DuckDB, in a background thread.

Differences from the legacy poller, on purpose (docs/migrating-traces.md):

* It drains the backlog: batches of ``OTEL_BATCH_SIZE`` (default 1000) are read
  back to back until a short batch says "caught up", then it sleeps
  ``OTEL_POLL_INTERVAL`` seconds (default 5). The first poll is at start.
* The cursor advances only when the batch (spans, patches and the cursor
  itself) committed in one DuckDB transaction. A failed read or write is
  retried from the same cursor with exponential backoff (1 s … 60 s) and logged;
  nothing is skipped, nothing repeated.
* Each ``ReadSpans`` call has a deadline (``OTEL_READ_TIMEOUT``, default 30 s).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from services.common.settings import get_otel_settings

from .proto import ingestion_pb2, ingestion_pb2_grpc
from .rows import SpanRow, entry_to_row
from .store import SpanStore

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


@dataclass
class PollerStatus:
    ingestion_addr: str
    running: bool = False
    last_poll_ok_at: float | None = None  # unix seconds of the last poll that reached "caught up"
    last_batch_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    spans_ingested: int = 0  # new span rows this process wrote
    entries_read: int = 0
    batches: int = 0
    cursor: str | None = None  # hex of the last committed WAL key
    started_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        now = time.time()
        since = None if self.last_poll_ok_at is None else now - self.last_poll_ok_at
        # Behind: the last polls failed, so spans written since are not here yet.
        # By how much: the time since the poller last had read everything.
        behind = self.consecutive_failures > 0
        since_start = None if self.started_at is None else now - self.started_at
        return {
            "behind": behind,
            "behind_by_s": (round(since if since is not None else since_start or 0.0, 3)) if behind else 0.0,
            "ingestion_addr": self.ingestion_addr,
            "running": self.running,
            "last_poll_ok_at": self.last_poll_ok_at,
            "seconds_since_last_ok_poll": None if self.last_poll_ok_at is None
            else round(now - self.last_poll_ok_at, 3),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "consecutive_failures": self.consecutive_failures,
            "spans_ingested": self.spans_ingested,
            "entries_read": self.entries_read,
            "batches": self.batches,
            "cursor": self.cursor,
        }


class Poller:
    def __init__(self, store: SpanStore, *, addr: str | None = None, interval: float | None = None,
                 batch_size: int | None = None, read_timeout: float | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.addr = addr or get_otel_settings().ingestion_addr
        self.interval = interval if interval is not None else get_otel_settings().poll_interval
        self.batch_size = batch_size or get_otel_settings().batch_size
        self.read_timeout = read_timeout or get_otel_settings().read_timeout
        self.on_batch = on_batch
        self.status = PollerStatus(self.addr)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._channel: grpc.Channel | None = None
        self._cursor: bytes | None = None

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> Poller:
        self._cursor = self.store.cursor_key()
        self.status.cursor = self._cursor.hex() if self._cursor else None
        self._channel = grpc.insecure_channel(self.addr)
        self._stub = ingestion_pb2_grpc.InternalIngestionServiceStub(self._channel)
        self._thread = threading.Thread(target=self._run, name="otel-poller", daemon=True)
        self.status.running = True
        self.status.started_at = time.time()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._channel is not None:
            self._channel.close()
        self.status.running = False

    def poke(self) -> None:
        """Poll now instead of at the next tick (tests, admin)."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception as exc:  # grpc.RpcError, duckdb.Error, anything: retry later
                self._failed(exc)
                self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            self._sleep(self.interval)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _failed(self, exc: Exception) -> None:
        s = self.status
        s.consecutive_failures += 1
        if isinstance(exc, grpc.RpcError):
            message = f"ReadSpans from {self.addr} failed: {exc.code().name}: {exc.details()}"
        else:
            message = f"{type(exc).__name__}: {exc}"
        s.last_error, s.last_error_at = message, time.time()
        # Log the first failure and then every 10th, so a down ingestion does not flood the log.
        if s.consecutive_failures == 1 or s.consecutive_failures % 10 == 0:
            log.warning("otel poller: %s (failure %d; retrying with backoff)", message,
                        s.consecutive_failures)

    def drain(self) -> int:
        """Read and store batches until ingestion has nothing newer. Returns new spans."""
        total = 0
        while not self._stop.is_set():
            entries = self._read()
            if entries:
                total += self._store(entries)
            if len(entries) < self.batch_size:
                break
        s = self.status
        if s.consecutive_failures:
            log.info("otel poller: ingestion at %s reachable again", self.addr)
        s.consecutive_failures = 0
        s.last_poll_ok_at = time.time()
        return total

    def _read(self) -> list[Any]:
        request = ingestion_pb2.ReadSpansRequest(start_key_ulid=self._cursor or b"",
                                                 batch_size=self.batch_size)
        # The whole stream is read before anything is stored: a broken stream
        # leaves the cursor where it was and the batch is read again.
        return list(self._stub.ReadSpans(request, timeout=self.read_timeout))

    def _store(self, entries: list[Any]) -> int:
        rows: list[SpanRow] = []
        for entry in entries:
            row = entry_to_row(entry.span_bytes, entry.resource_bytes)
            if row is not None:
                rows.append(row)
        last_key = entries[-1].key_ulid
        new = self.store.ingest(rows, last_key)
        self._cursor = last_key
        s = self.status
        s.cursor, s.batches, s.last_batch_at = last_key.hex(), s.batches + 1, time.time()
        s.entries_read += len(entries)
        s.spans_ingested += new
        if self.on_batch is not None:
            self.on_batch(new)
        return new
