"""The gateway's output: one JSON object per line, written off the event loop.

Every line the process logs — the access log, the gateway's own messages,
uvicorn's — is one JSON object on stdout with nothing before it, so ``jq`` and
log shippers read it as it is::

    {"time":"2026-12-02T06:27:11.599Z","level":"info","logger":"uvicorn.error","message":"Started server process [7]"}

Three pieces:

* :class:`LineWriter` owns stdout. Callers append finished lines to a buffer
  (a ``deque`` append: no lock, no system call, never a wait on the pipe) and a
  writer thread hands them to the kernel in batches, every 50 ms (to a pipe
  in writes of up to ``PIPE_BUF`` bytes cut at line ends, so the lines of
  several worker processes sharing it never interleave). A stdout that
  blocks (a full pipe nobody reads, a stalled log shipper) stalls only that
  thread; requests go on. Past ``max_lines`` of backlog new lines are dropped
  and counted rather than growing memory without bound, and a line saying how
  many were dropped follows once the pipe moves again. :func:`finish` drains the
  buffer at a graceful shutdown and makes later lines synchronous, because
  uvicorn ends a SIGTERM'd process by re-raising the signal, which kills it
  before any exit hook could flush.
* :class:`JsonLineHandler` is the ``logging`` handler: records from any logger
  become JSON lines on the writer. ``gateway serve`` hands uvicorn
  :func:`log_config`, so its own loggers and every worker process use it.
* :func:`access_line` formats one access-log record without ``logging``'s
  record machinery or a general JSON encoder: strings go through ``json``'s C
  escaper, numbers and constants as they are. The gateway doesn't even call
  it on the request path: it hands the writer a tuple of what it knows
  (:meth:`LineWriter.defer`) and the writer thread renders a batch at a time.
  That is what keeps the access log to a few microseconds per request.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

# json's C escaper (the one json.dumps uses): str → '"…"' with ASCII escapes.
_quote = json.encoder.encode_basestring_ascii

# Lines queued beyond this are dropped (and counted): ~64 MiB of access lines.
MAX_BACKLOG_LINES = 200_000
BATCH_INTERVAL = 0.05  # seconds the writer lets lines gather between two batches
DRAIN_TIMEOUT = 10.0  # seconds a graceful stop waits for stdout to take the backlog
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)  # the largest write a pipe takes whole


class LineWriter:
    """Lines to a file descriptor in batches, from a thread of its own.

    The buffer is a ``deque``: callers append without a lock (``deque.append``
    is atomic), so queueing a line costs about what the append costs, and the
    writer thread pops from the other end. ``_io`` is held while a batch is
    taken and written, so batches go out whole and in order. :meth:`flush`
    queues a marker and waits until the writer reaches it: everything queued
    before it is written by then.
    """

    def __init__(self, fd: int, *, max_lines: int = MAX_BACKLOG_LINES, interval: float = BATCH_INTERVAL,
                 idle_wait: float = 1.0):
        self.fd = fd
        self.max_lines = max_lines
        self.interval = interval
        self.idle_wait = idle_wait  # the longest the writer sleeps on an empty queue between checks
        self.failed = 0  # writes the file descriptor refused (a closed pipe)
        # A pipe or socket takes only writes of up to PIPE_BUF whole, so batches
        # are cut there; a file takes each write whole (the kernel holds the
        # shared offset), so a batch is one write.
        try:
            mode = os.fstat(fd).st_mode
            self.chunk = PIPE_BUF if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else 1 << 20
        except OSError:
            self.chunk = PIPE_BUF
        self._reset()

    def _reset(self) -> None:
        self._io = threading.Lock()
        self._start_lock = threading.Lock()
        self._drop_lock = threading.Lock()  # only taken past the bound: the count stays exact
        self._wake = threading.Event()
        self._flushing = threading.Event()  # a flush() waits: cut the gathering pause short
        self._items: deque[str | tuple[Callable[[Any], str], Any] | threading.Event] = deque()
        self.dropped = 0  # lines refused since the last report
        self._thread: threading.Thread | None = None
        self._synchronous = False

    # -- the hot path ----------------------------------------------------------
    def write(self, line: str) -> None:
        """Queue ``line`` (which ends with a newline)."""
        self._put(line)

    def defer(self, render: Callable[[Any], str], record: Any) -> None:
        """Queue the line ``render(record)``, rendered by the writer thread.

        For the access log: the request only keeps a tuple of what it knows;
        turning it into JSON happens off the request path, a batch at a time.
        Measured in the gateway under load, formatting each line on the
        request path cost ~3× what the same code costs run back to back (the
        request's other work evicts it from the CPU caches every time)."""
        self._put((render, record))

    def _put(self, item: str | tuple[Callable[[Any], str], Any]) -> None:
        if self._synchronous:
            with self._io:
                self._items.append(item)
                self._write_batch()
            return
        items = self._items
        if len(items) >= self.max_lines:
            with self._drop_lock:
                self.dropped += 1
            return
        items.append(item)
        if len(items) == 1:  # one wake-up per batch, not per line (the writer checks the queue too)
            if self._thread is None:
                self._start()
            self._wake.set()
        if self._synchronous:  # finish() ran meanwhile and the writer may be gone: write it now
            self._drain_here()

    # -- writing -----------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gateway-log-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            # Callers wake the writer only when the queue goes from empty to one
            # line; lines that came while it wrote are still queued, so it only
            # sleeps on an empty queue.
            if not self._items:
                self._wake.wait(self.idle_wait)
            self._wake.clear()
            with self._io:
                self._write_batch()
                if self._synchronous:  # finish(): from now on callers write their own lines
                    self._thread = None
                    self._write_batch()  # what came in while the flag was set
                    return
            # Let the next lines gather: under load this makes one write per
            # few hundred lines instead of one per request. A flush() (a
            # graceful stop, a test) does not wait for the pause to end.
            if self._flushing.wait(self.interval):
                self._flushing.clear()

    def _write_batch(self) -> None:
        """Write everything queued; set the flush markers met on the way.
        The caller holds ``_io``."""
        items = self._items
        popleft = items.popleft
        lines: list[str] = []
        markers: list[threading.Event] = []
        # What is queued now, not what keeps arriving: a batch has an end.
        for _ in range(len(items)):
            item = popleft()
            if isinstance(item, tuple):  # a deferred line (the access log): the most common item
                try:
                    lines.append(item[0](item[1]))
                except Exception as exc:  # a bug in a renderer must not stop the writer thread
                    lines.append(_render_failed(exc))
            elif isinstance(item, str):
                lines.append(item)
            else:  # a flush marker: what came before it goes out first
                self._write_lines(lines)
                lines = []
                markers.append(item)
        with self._drop_lock:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            lines.append(format_line("warning", "gateway.logs", f"{dropped} log line(s) dropped: stdout did "
                                     "not keep up (a blocked pipe or a slow log shipper)"))
        self._write_lines(lines)
        for marker in markers:
            marker.set()

    def _write_lines(self, lines: list[str]) -> None:
        """``lines`` in writes cut at line ends, at most ``self.chunk`` bytes:
        the workers of one `gateway serve` share stdout, and a pipe takes only
        PIPE_BUF bytes whole, never interleaved with another process's. (Each
        write also costs this thread a turn at the GIL: the fewer, the better.)"""
        limit = self.chunk
        chunk: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) > limit and chunk:
                self._write_out("".join(chunk).encode("utf-8", "backslashreplace"))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write_out("".join(chunk).encode("utf-8", "backslashreplace"))

    def _write_out(self, data: bytes) -> None:
        """All of ``data`` to the fd (blocking), partial writes resumed."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:  # someone made the fd non-blocking: wait for room
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError:  # a closed pipe, a bad fd: nothing left to write to
                self.failed += 1
                return
            view = view[n:]

    # -- flushing ----------------------------------------------------------------
    def flush(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait until every line queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        marker = threading.Event()
        self._items.append(marker)
        if self._thread is None or self._synchronous:
            self._drain_here(timeout)
        else:
            self._flushing.set()
            self._wake.set()
        while not marker.wait(0.05):
            if self._thread is None or self._synchronous:
                # Nothing is writing (never started, or finish() ended the
                # writer before it reached the marker): write it here.
                self._drain_here(deadline - time.monotonic())
            if time.monotonic() >= deadline:
                return marker.is_set()
        return True

    def _drain_here(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Write what is queued from the calling thread (never on the hot path)."""
        if self._io.acquire(timeout=max(0.0, timeout)):
            try:
                self._write_batch()
            finally:
                self._io.release()

    def finish(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Drain, then have every later line written synchronously by its caller.

        For the end of a graceful shutdown: no request is left to stall, and a
        process killed by its re-raised SIGTERM has nothing left in a buffer.
        False (and still asynchronous) when stdout did not take the backlog in
        ``timeout`` seconds."""
        if not self.flush(timeout):
            return False
        self._synchronous = True
        self._wake.set()  # the thread writes what came in meanwhile, then exits
        return True

    def after_fork(self) -> None:
        """In a forked child: the parent's thread and locks don't exist here, and
        its buffered lines are the parent's to write."""
        self._reset()


# -- one writer per process, on stdout ------------------------------------------

_stdout: LineWriter | None = None
_configured = False  # a JsonLineHandler exists: gateway serve's logging is on


def _render_failed(exc: Exception) -> str:
    return format_line("error", "gateway.logs", f"a log line could not be rendered: {exc!r}")


def stdout_writer() -> LineWriter:
    global _stdout
    if _stdout is None:
        _stdout = LineWriter(1)
        atexit.register(_stdout.flush)  # a normal exit (the multi-worker parent, a failed start)
        os.register_at_fork(after_in_child=_stdout.after_fork)
    return _stdout


def configured_writer() -> LineWriter | None:
    """The stdout writer when this process logs JSON through it (``gateway
    serve``), else None: an embedding app keeps its own logging setup."""
    return stdout_writer() if _configured else None


def finish(timeout: float = DRAIN_TIMEOUT) -> bool:
    """At the end of a graceful shutdown: see :meth:`LineWriter.finish`."""
    return _stdout.finish(timeout) if _stdout is not None else True


# -- formatting ----------------------------------------------------------------

_clock: tuple[int, str] = (-1, "")  # (second, its text); one tuple, so threads never see half of it
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def timestamp(now: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-12-02T06:27:11.599Z``.

    The access log asks for it on every request, so the text up to the second
    is built once a second and the milliseconds come from a table."""
    global _clock
    second, millis = divmod(int((time.time() if now is None else now) * 1000), 1000)
    clock = _clock
    if second != clock[0]:
        clock = _clock = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return clock[1] + _MILLIS[millis]


def format_line(level: str, logger: str, message: str, now: float | None = None,
                extra: dict[str, Any] | None = None) -> str:
    """One JSON log line (with its newline) for a plain message."""
    record = {"time": timestamp(now), "level": level, "logger": logger, "message": message}
    if extra:
        record.update(extra)
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


class JsonFormatter(logging.Formatter):
    """A ``logging`` record as one JSON object: time, level, logger, message,
    and the traceback (``exc``) or stack (``stack``) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        extra: dict[str, Any] = {}
        if record.exc_info:
            extra["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            extra["exc"] = record.exc_text
        if record.stack_info:
            extra["stack"] = self.formatStack(record.stack_info)
        return format_line(record.levelname.lower(), record.name, record.getMessage(), record.created, extra)


class JsonLineHandler(logging.Handler):
    """Every record as a JSON line on the process's stdout writer."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        global _configured
        super().__init__(level)
        self.setFormatter(JsonFormatter())
        self.writer = stdout_writer()
        _configured = True
        # Python's own warnings too, or they'd reach stderr as plain text.
        logging.captureWarnings(True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:  # a log line must never take a request down
            self.handleError(record)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        # dictConfig closes the handlers it replaces: drain, but keep the
        # process's writer (the new handler uses the same one).
        self.writer.flush()
        super().close()


def log_config(level: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` for ``gateway serve``, handed to uvicorn
    (``log_config=``), which applies it in every worker process too.

    Everything goes through the root logger's JSON handler; uvicorn's loggers
    propagate to it. The access log is not tied to ``--log-level`` (as in
    nginx, it has its own switch, ``--no-access-log``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": f"{__name__}.JsonLineHandler"}},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {"gateway.access": {"level": "INFO"}},
    }


# -- the access log ----------------------------------------------------------------

# Quoted forms of the fields that take few values (method, route prefix,
# state, backend, service, client address): each is escaped once, then looked
# up. Bounded: past _QUOTED_MAX entries (many distinct clients) it starts over.
_quoted: dict[str | None, str] = {None: "null"}
_QUOTED_MAX = 4096


def _quoted_miss(value: str | None) -> str:
    if len(_quoted) >= _QUOTED_MAX:
        _quoted.clear()
        _quoted[None] = "null"
    quoted = _quoted[value] = "null" if value is None else _quote(value)
    return quoted


def access_line(method: str, path: str, status: int, ms: float, route: str, state: str | None,
                backend: str, service: str | None, client: str | None, request_id: str, trace_id: str,
                upstream_error: str | None = None, edge: str | None = None, now: float | None = None,
                peer: str | None = None) -> str:
    """One access-log record as a JSON line, the same object ``json.dumps``
    would make of these fields (tests/unit/test_logs.py holds it to that).

    ``request_id`` and ``trace_id`` are escaped too although the gateway
    validates both (gateway/ops/tracing.py): a few hundred nanoseconds buy not
    having to keep the two modules in step. The writer thread calls this once
    per request, so it is written for speed: positional arguments, the
    low-cardinality fields' quoted forms looked up (``_quoted``)."""
    q = _quoted.get
    line = (f'{{"time":"{timestamp(now)}","level":"info","logger":"gateway.access",'
            f'"method":{q(method) or _quoted_miss(method)},"path":{_quote(path)},"status":{int(status)},'
            f'"ms":{ms:.2f},"route":{q(route) or _quoted_miss(route)},'
            f'"state":{q(state) or _quoted_miss(state)},"backend":{q(backend) or _quoted_miss(backend)},'
            f'"service":{q(service) or _quoted_miss(service)},"client":{q(client) or _quoted_miss(client)},'
            f'"request_id":{_quote(request_id)},"trace_id":{_quote(trace_id)}')
    if upstream_error:
        line += f',"upstream_error":{_quote(upstream_error)}'
    if edge:
        line += f',"edge":{_quote(edge)}'
    if peer:  # the socket peer, when a trusted proxy's X-Forwarded-For named another client
        line += f',"peer":{_quote(peer)}'
    return line + "}\n"
