"""One writer, many workers: who owns the DuckDB file, and how the others ask it.

DuckDB lets one process open a file for writing, and then no other process may
open it at all. With ``gateway serve --workers N`` (or several gateways on one
host sharing ``OTEL_DUCKDB_PATH``) exactly one process must hold it:

* **Election** — every process runs a small thread that tries a non-blocking
  ``fcntl.flock(LOCK_EX)`` on ``<duckdb>.lock`` every ``ELECTION_INTERVAL`` s.
  The winner is the *owner*: it opens DuckDB, runs the poller and serves
  queries on a Unix socket (``<duckdb>.sock``, or ``OTEL_SOCKET_PATH``). The
  kernel drops the lock when the owner's process dies, however it dies, and
  the next follower to try takes over (within ~0.5 s plus DuckDB's open).
* **Followers** — forward each /otel query over the socket: one connection per
  query, frame = 4-byte big-endian length + payload. Request payload = JSON
  ``{"op": "answer", "route", "params", "pretty"}``;
  reply payload = 2-byte status + body (the exact response bytes).
* **Bounds** — DuckDB work runs in threads; at most ``OTEL_DB_CONCURRENCY``
  queries at once in the owner, whoever asked (store.py).

Limits: one host only (flock + a Unix socket); the owner's worker also serves
HTTP, so its CPU is shared between the poller, its own requests and the
followers' queries.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import socket
import socketserver
import struct
import tempfile
import threading
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from services.common.responses import go_json
from services.common.settings import get_otel_settings

from .poller import Poller
from .store import QueryError, SpanStore, duckdb_path

log = logging.getLogger(__name__)

ELECTION_INTERVAL = 0.5
_LEN = struct.Struct(">I")
_STATUS = struct.Struct(">H")
MAX_FRAME = 1 << 31


class Unavailable(Exception):
    """No owner answered (starting up, or the file is held by another program)."""


def socket_path_for(db_path: str) -> str:
    explicit = get_otel_settings().socket_path
    if explicit:
        return explicit
    beside = os.path.abspath(db_path) + ".sock"
    if len(beside.encode()) < 100:  # sun_path is 108 bytes on Linux
        return beside
    digest = hashlib.sha256(os.path.abspath(db_path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"junjo-otel-{digest}.sock")


def answer_local(store: SpanStore, route: str, params: dict[str, str], pretty: bool) -> tuple[int, bytes]:
    """(status, body) for a route, from the store (blocking)."""
    try:
        return 200, store.answer(route, params, pretty)
    except QueryError as exc:
        return 500, go_json({"error": f"database query failed: {exc}"}, pretty=pretty) + b"\n"


# --- the owner's socket server (threads) -------------------------------------

def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pipeline: Pipeline = self.server.pipeline  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        try:
            (size,) = _LEN.unpack(_read_exact(sock, 4))
            request = json.loads(_read_exact(sock, size))
            assert pipeline.store is not None  # only the owner serves the socket
            status, body = answer_local(pipeline.store, request["route"], request["params"],
                                        bool(request.get("pretty")))
            payload = _STATUS.pack(status) + body
            sock.sendall(_LEN.pack(len(payload)) + payload)
        except (ConnectionError, OSError, ValueError, KeyError) as exc:
            log.debug("otel owner socket: %s", exc)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


# --- the pipeline (one per process) ------------------------------------------------

class Pipeline:
    """Election, and — when this process owns the file — the store, poller and socket."""

    def __init__(self, db_path: str | None = None, *, start_poller: bool = True,
                 poller_options: dict[str, Any] | None = None) -> None:
        self.db_path = db_path or duckdb_path()
        self.lock_path = os.path.abspath(self.db_path) + ".lock"
        self.socket_path = socket_path_for(self.db_path)
        self.start_poller = start_poller
        self.poller_options = poller_options or {}
        self.store: SpanStore | None = None
        self.poller: Poller | None = None
        self.role = "starting"
        self.last_open_error: str | None = None
        self._lock_fd: int | None = None
        self._server: _Server | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._local_slots: tuple[Any, asyncio.Semaphore] | None = None  # (loop, semaphore)

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> Pipeline:
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        self._thread = threading.Thread(target=self._elect, name="otel-election", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.poller is not None:
            self.poller.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self.role = "stopped"

    def wait_ready(self, timeout: float) -> bool:
        """Wait until this process is the owner (tests)."""
        return self._ready.wait(timeout)

    def _elect(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.role = "follower"
        while not self._stop.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._stop.wait(ELECTION_INTERVAL)
                continue
            self._lock_fd = fd
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            while not self._stop.is_set():
                try:
                    self._become_owner()
                    return
                except Exception as exc:  # e.g. the file is held by a program that does not flock
                    self.last_open_error = f"{type(exc).__name__}: {exc}"
                    log.error("otel: cannot open %s as owner: %s (retrying)", self.db_path, exc)
                    self._stop.wait(2.0)
            return
        os.close(fd)

    def _become_owner(self) -> None:
        self.store = SpanStore(self.db_path)
        try:
            os.unlink(self.socket_path)  # a dead owner's leftover
        except FileNotFoundError:
            pass
        server = _Server(self.socket_path, _Handler)
        server.pipeline = self  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, name="otel-owner-socket", daemon=True).start()
        self._server = server
        if self.start_poller:
            self.poller = Poller(self.store, **self.poller_options).start()
        self.role = "owner"
        self.last_open_error = None
        self._ready.set()
        log.info("otel: pid %d owns %s (socket %s)", os.getpid(), self.db_path, self.socket_path)

    # --- queries ------------------------------------------------------------------

    async def answer(self, route: str, params: dict[str, str], pretty: bool,
                     wait: float = 5.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + wait
        while True:
            if self.role == "owner" and self.store is not None:
                async with self._slots():
                    return await run_in_threadpool(answer_local, self.store, route, params, pretty)
            try:
                # Bounded: a hung (not dead) owner must not hold follower requests forever.
                # Read at the call, like every setting: never at import, which may
                # come before the environment is set (a test's fork server did).
                query_timeout = get_otel_settings().query_timeout  # seconds a follower waits for the owner
                async with asyncio.timeout(query_timeout):
                    return await self._ask_owner({"op": "answer", "route": route, "params": params,
                                                  "pretty": pretty})
            except TimeoutError:
                raise Unavailable(f"the trace store's owner (pid {self._owner_pid()}) did not answer "
                                  f"within {query_timeout:g} s") from None
            except (ConnectionError, FileNotFoundError, OSError, asyncio.IncompleteReadError):
                if time.monotonic() > deadline:
                    raise Unavailable(self.last_open_error or "no process owns the trace store yet") from None
                await asyncio.sleep(0.05)

    def _slots(self) -> asyncio.Semaphore:
        """Bounds this loop's threads waiting on DuckDB (one semaphore per event loop)."""
        loop = asyncio.get_running_loop()
        if self._local_slots is None or self._local_slots[0] is not loop:
            n = get_otel_settings().db_concurrency
            self._local_slots = (loop, asyncio.Semaphore(n))
        return self._local_slots[1]

    async def _ask_owner(self, request: dict[str, Any]) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 20)
        try:
            payload = json.dumps(request).encode()
            writer.write(_LEN.pack(len(payload)) + payload)
            await writer.drain()
            (size,) = _LEN.unpack(await reader.readexactly(4))
            reply = await reader.readexactly(size)
        finally:
            writer.close()
        (status,) = _STATUS.unpack(reply[:2])
        return status, reply[2:]

    # --- health ----------------------------------------------------------------------

    def _owner_pid(self) -> int | None:
        try:
            with open(self.lock_path) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def local_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "pid": os.getpid(), "duckdb_path": self.db_path,
                               "owner_pid": os.getpid() if self.role == "owner" else self._owner_pid()}
        if self.last_open_error:
            out["open_error"] = self.last_open_error
        if self.poller is not None:
            out["poller"] = self.poller.status.as_dict()
        return out


_pipeline: Pipeline | None = None
_pipeline_lock = threading.Lock()


def get_pipeline(start: bool = True) -> Pipeline | None:
    """The process-wide pipeline, started on first use."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None and start:
            _pipeline = Pipeline().start()
        return _pipeline


def set_pipeline(pipeline: Pipeline | None) -> None:
    """Replace (tests) the process-wide pipeline; the old one is stopped."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is not None and _pipeline is not pipeline:
            _pipeline.stop()
        _pipeline = pipeline
