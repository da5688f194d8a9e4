"""The client side of the edge: uvicorn's httptools protocol, held to limits.

``gateway serve`` runs uvicorn with ``http="gateway.edge.protocol:EdgeProtocol"``
(a path, so ``--workers N`` processes import it too). What it adds to
uvicorn 0.54's ``HttpToolsProtocol``, and why:

* **Head limits on the wire.** Each read that belongs to a request head goes
  through a :class:`~gateway.edge.headscan.HeadScanner` before the parser:
  request line → 414, a header line, the header count or the head size → 431,
  with ``Connection: close``. The request never reaches the app, and a head
  that never ends is cut at the limit instead of being buffered (llhttp and
  uvicorn have no limits of their own).
* **One clock per connection.** A new connection must deliver a whole head
  within ``head_timeout`` (408, also when it sends nothing); an idle keep-alive
  connection is closed after ``keepalive_timeout``, then the next head gets
  ``head_timeout`` from its first byte; a request body may pause
  ``body_idle_timeout`` (408, or a close once the answer has started). uvicorn
  arms its keep-alive timer only when a response completes and cancels it on
  *any* byte received, so a stray CRLF, the rest of a body the app answered
  early, or the first byte of a next request left a connection with no timer
  at all — for ever (and nothing armed it on a fresh connection). Here the
  deadline follows the connection's state, never cancelled by bytes.
* **A connection limit** per worker, below the descriptor limit
  (``gateway/edge/connections.py``, ``descriptors.py``); refusals are a 503.
* **Trailers stay trailers.** uvicorn appends trailer fields to the list that
  is ``scope["headers"]``; when they arrived in the same read as the head, the
  app forwarded them as request headers. They are dropped (and bounded).
* **A client that stops reading** its answer for ``send_timeout`` (the
  transport's write buffer stays full) has its connection aborted; the app sees
  it leave, so the upstream exchange is cancelled and its connection freed.
* **HTTP/1.0 clients get close-delimited bodies**, never chunked (RFC 9112 §7).
* **A malformed request never gets a 400 once the app has it.** A parse error in
  a head, or in a body before the app has run (same read as the head), is a
  400 and nothing is forwarded. Once the app runs (the request may be upstream
  already), the app sees the client as gone (the forwarder cancels the upstream
  exchange), the connection is closed, and the access log says why.

Refusals are written, then the connection is half-closed and lingers a moment
reading and discarding, so the client reads the answer rather than a reset.
"""
from __future__ import annotations

import asyncio
import contextvars
import fcntl
import json
import logging
import math
import struct
import sys
import termios
import time
import urllib.parse
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from gateway.context import CYCLE_KEY
from gateway.edge import events
from gateway.httpdate import http_date

from .connections import Slots, slots_for
from .cycle import EDGE_KEY, EdgeCycle, EdgeNote
from .descriptors import LINGER_BUDGET
from .headscan import HeadScanner, Verdict, measured_head
from .limits import EdgeLimits, live

log = logging.getLogger("gateway.edge")

# The uvicorn release whose HttpToolsProtocol/RequestResponseCycle internals this
# module copies (on_headers_complete, _start_asgi_task) and relies on (cycle
# fields, FlowControl). pyproject pins it; tests/unit/test_edge_limits.py fails
# on another version, so a bump starts with a re-read of uvicorn's httptools_impl.py.
UVICORN_SERIES = "0.54."
LINGER = 2.0  # seconds a refused connection keeps draining input before it is closed

# Where the parser is on this connection.
WAIT = 0  # between requests: nothing of the next head yet
HEAD = 1  # inside a request head
BODY = 2  # head handed over, body still arriving
DONE = 3  # request complete, its answer still going out

# What the connection's single deadline means.
NO_CLOCK, FIRST_HEAD, NEXT_HEAD, KEEPALIVE, BODY_IDLE, LINGERING = range(6)


class _TrailersTooLarge(Exception):
    pass


class _HeadTooLarge(Exception):
    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


class EdgeProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.live = live()
        self.limits: EdgeLimits = self.live.current()  # this connection's, for its whole life
        self.slots: Slots = slots_for(server_state, self.live)
        self.scanner = HeadScanner(self.limits)
        self.phase = WAIT
        self.refused = False  # answered by the edge: input is drained, nothing parsed
        self.lingering = False  # half-closed after a refusal, counted in slots.lingering
        self.close_after_response = False  # a later request broke: end after this answer
        self.pending: tuple[int, str] | None = None  # the refusal to write after that answer
        self.active: EdgeCycle | None = None  # the cycle whose app task runs
        # The deadline, checked lazily: bytes only move ``deadline``; the one
        # timer handle re-arms itself when it fires early.
        self.clock = NO_CLOCK
        self.deadline = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        # Armed while the transport's write buffer is full (the client reads
        # none of the answer); never on the hot path.
        self.send_timer: asyncio.TimerHandle | None = None
        self.send_backlog = 0  # the write buffer's size when send_timer was (re)armed
        # Body framing of the request being received.
        self.body_left = -1  # Content-Length bytes still to come; -1: not length-delimited (or no request yet)
        self.chunk_open = False  # between a chunk's size line and its end
        self.chunk_data = False  # that chunk has had data (so it is not the last one)
        self.unscanned = False  # feeding bytes the head scanner has not seen
        self.head_unscanned = False  # the current head began in such bytes
        self.trailer_tail = 0  # bytes of an unfinished trailer line
        self.trailer_fields = 0
        self.trailer_size = 0

    # -- connection ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.slots.admit(self, self.limits):
            self._refuse_at_limit()
            return
        self.slots.waiting_for_head(self)
        self._set_clock(FIRST_HEAD, self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_clock(NO_CLOCK)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        self.slots.forget(self)
        if self.lingering:
            self.lingering = False
            self.slots.lingering -= 1
        # uvicorn cancels its keep-alive timer only when exc is None (a reset
        # leaves it pinning the connection); this class never arms it.
        super().connection_lost(exc)
        if isinstance(self.cycle, EdgeCycle):  # its watcher, if any (forwarder.py)
            self.cycle.tell_disconnected()

    def evict(self) -> None:
        """Pushed out to make room for a new connection (see connections.py)."""
        if self.transport.is_closing():
            return
        if self.phase == WAIT and self.clock == KEEPALIVE:
            self.transport.close()  # an idle keep-alive connection: as its timeout would
            return
        self._note("connection limit reached: evicted while waiting for a request head")
        self._refuse(503, "The gateway is at its connection limit; try again shortly.", "max_connections")

    # -- reading ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # draining before the close; nothing more is parsed
        if self.phase == WAIT or (self.phase == DONE and not self.scanner.started):
            if self.clock == KEEPALIVE:
                self.slots.waiting_for_head(self)
            if self.clock in (KEEPALIVE, NO_CLOCK):
                self._set_clock(NEXT_HEAD, self.limits.head_timeout)
        elif self.phase == BODY and self.clock == BODY_IDLE:
            self.deadline = self.loop.time() + self.limits.body_idle_timeout
        n = len(data)
        pos = 0
        while pos < n and not self.refused and not self.transport.is_closing():
            if self.phase == BODY:
                pos = self._feed_body(data, pos)
            else:
                pos = self._feed_head(data, pos)
            if pos < 0:
                return

    def _feed_head(self, data: bytes, pos: int) -> int:
        """Scan, then parse, the head bytes of ``data[pos:]``; -1 to stop."""
        end, done, verdict = self.scanner.scan(data, pos)
        if verdict is not None:
            self._refuse_head(verdict)
            return -1
        if not self._feed(data if pos == 0 and end == len(data) else memoryview(data)[pos:end]):
            return -1
        if done and self.phase in (WAIT, HEAD):
            # The scanner saw the blank line, the parser did not finish the head:
            # they disagree, and the parser would go on buffering. Refuse.
            self._bad_request("Invalid HTTP request received (the head did not end where expected).")
            return -1
        return end

    def _feed_body(self, data: bytes, pos: int) -> int:
        n = len(data)
        if self.body_left > 0:
            # Length-delimited: feed exactly the rest of this body, so a next
            # request pipelined behind it starts a fresh scan at its first byte.
            end = min(n, pos + self.body_left)
            if not self._feed(data if pos == 0 and end == n else memoryview(data)[pos:end]):
                return -1
            return end
        piece = data if pos == 0 else data[pos:]
        # Where a chunked body ends is the parser's to know: a request
        # pipelined behind it in this read is parsed unscanned, and its head
        # is measured from the parser's callbacks instead (on_headers_complete).
        self.unscanned = True
        try:
            if not self._feed(piece):
                return -1
        finally:
            self.unscanned = False
        if self.phase == BODY:
            self._check_trailer_tail(piece)
        elif self.phase == HEAD:
            # A chunked body ended in this read and a pipelined head began;
            # the body's last bytes are the CRLF CRLF that end its trailer
            # section, so the new head starts after the last such.
            start = piece.rfind(b"\r\n\r\n") + 4
            _, _, verdict = self.scanner.scan(piece[start:] if start > 3 else piece)
            if verdict is not None:
                self._refuse_head(verdict)
                return -1
        return n

    def _feed(self, data: bytes | memoryview) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._set_clock(NO_CLOCK)  # the websocket protocol takes the connection over
                self.slots.forget(self)
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head(exc.__context__.verdict)
            elif isinstance(exc.__context__, _TrailersTooLarge):
                self._malformed(str(exc.__context__))
            else:
                self._malformed(f"{exc}")
            return False
        return True

    # -- parser callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEAD
        self.head_unscanned = self.unscanned
        self.trailer_fields = self.trailer_size = self.trailer_tail = 0
        self.chunk_open = self.chunk_data = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase != HEAD:
            # A trailer field (chunked body). uvicorn would append it to the
            # list behind scope["headers"]; it is dropped, within limits.
            self._count_trailer(len(name) + len(value) + 4)
            return
        # uvicorn 0.54's, inline (a call per header field).
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """uvicorn 0.54's, with the edge's cycle, framing and state."""
        if self.head_unscanned:
            verdict = measured_head(self.limits, self.parser.get_method(), self.url, self.headers)
            if verdict is not None:
                raise _HeadTooLarge(verdict)  # the parser stops; _feed refuses
        self.phase = BODY
        self.slots.busy(self)
        self.body_left = _content_length(self.headers)
        if self.body_left != 0:
            # A body to come: its idle clock. Without one (every GET) the
            # parser completes the request in this very feed, which stops the
            # clock: no deadline to compute for it.
            self._set_clock(BODY_IDLE, self.limits.body_idle_timeout)
        http_version = self.parser.get_http_version()
        method = self.parser.get_method()
        self.scope["method"] = method.decode("ascii")
        if http_version != "1.1":
            self.scope["http_version"] = http_version
        if self.parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        self.scope["path"] = self.root_path + path
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = parsed_url.query or b""

        existing_cycle = self.cycle
        self.cycle = EdgeCycle(
            scope=self.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        self.cycle.loop = self.loop
        # The cycle, for a watcher of the client (forwarder.py); and where an
        # EdgeNote goes should the edge end this request (_abort_cycle): made
        # then, not for every request. Copies of the scope share this dict.
        extensions: Any = {CYCLE_KEY: self.cycle}  # uvicorn types the values as dicts
        self.scope["extensions"] = extensions
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:
            # Pipelined HTTP requests need to be queued up.
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """uvicorn's, keeping the task on the cycle (to cancel one that has not run)."""
        if self.config.reset_contextvars and sys.version_info >= (3, 11):
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        elif self.config.reset_contextvars:  # pragma: no cover - Python 3.10
            task = contextvars.Context().run(self.loop.create_task, cycle.run_asgi(app))
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        if isinstance(cycle, EdgeCycle):
            cycle.task = task
            self.active = cycle

    def on_body(self, body: bytes) -> None:
        if self.body_left > 0:
            self.body_left -= len(body)
        self.chunk_data = True
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self.chunk_open, self.chunk_data = True, False

    def on_chunk_complete(self) -> None:
        self.chunk_open = False

    def on_message_complete(self) -> None:
        self.phase = DONE
        self.body_left = -1
        self._set_clock(NO_CLOCK)
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
            self._keep_alive()  # the answer went out before the body was all in

    # -- answering -------------------------------------------------------------
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        self.active = None
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.close_after_response:
            if self.pending is not None:  # a later request's refusal, held back until now
                self._write_refusal(*self.pending)
            else:
                self.transport.close()
        elif self.phase == DONE:
            self._keep_alive()
        # BODY (answered early, the body still arriving) and HEAD (a pipelined
        # head on its way) keep the clock they have.

    def _keep_alive(self) -> None:
        self.phase = WAIT
        if self.transport.is_closing():
            return
        self.slots.keeping_alive(self)
        self._set_clock(KEEPALIVE, self.limits.keepalive_timeout)

    def shutdown(self) -> None:
        if self.refused:
            self.transport.close()
            return
        super().shutdown()

    # -- a client that stops reading -------------------------------------------
    def pause_writing(self) -> None:
        """The write buffer is full. uvicorn then holds the app's sends (and so
        the upstream's reads) until it drains; a client that stops reading
        would hold its pooled upstream connection for ever, and a connection
        already closing (its answer written whole, ``Connection: close`` or a
        keep-alive timeout) would wait for ever to flush. So, as nginx's
        ``send_timeout``: ``send_timeout`` seconds in which the client takes
        nothing of what is buffered for it end the connection. A client that
        reads, however slowly, keeps it (the check is for progress, not for
        the buffer to empty)."""
        super().pause_writing()
        if self.send_timer is None:
            self._arm_send_timer()

    def _arm_send_timer(self) -> None:
        self.send_backlog = self._unsent()
        self.send_timer = self.loop.call_later(self.limits.send_timeout, self._send_stalled)

    def _unsent(self) -> int:
        """Bytes written for the client that it has not acknowledged: the
        transport's buffer plus the kernel's send queue (TIOCOUTQ). The
        kernel's part shrinks with every ACK, so a slow reader shows progress
        even while the transport's buffer waits for the socket to turn
        writable (a third of its buffer free)."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except (OSError, ValueError):
                pass
        return unsent

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def _send_stalled(self) -> None:
        # Never fires after connection_lost (which cancels it): the socket is still open.
        self.send_timer = None
        if not self.flow.write_paused and not self.transport.is_closing():
            return  # drained meanwhile (resume_writing cancels this timer; a race costs nothing)
        backlog = self._unsent()
        if 0 < backlog < self.send_backlog:
            self._arm_send_timer()  # the client took some: it is reading, just slowly
            return
        if backlog == 0:
            return
        secs = f"{self.limits.send_timeout:g} s"
        self._note(f"the client read none of the answer for {secs}: connection aborted")
        self._throttled_log("send_timeout", "aborting %s: it read none of its answer for %s", self._peer(), secs)
        self.transport.abort()  # close() would wait for the buffer the client isn't reading

    # -- the clock -------------------------------------------------------------
    def _set_clock(self, kind: int, seconds: float = math.inf) -> None:
        self.clock = kind
        if kind == NO_CLOCK:
            self.deadline = math.inf
            return
        self.deadline = self.loop.time() + seconds
        self._arm(self.deadline)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            if self.timer_at <= when:
                return  # fires first, finds the later deadline, re-arms
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        if self.transport is None or self.transport.is_closing() or self.clock == NO_CLOCK:
            return
        now = self.loop.time()
        if now < self.deadline:
            self._arm(self.deadline)
            return
        clock = self.clock
        if clock == BODY_IDLE and (self.flow.read_paused or getattr(self.cycle, "waiting_for_100_continue", False)):
            # The app isn't reading (or hasn't asked for the body yet): not the client's pause.
            self.deadline = now + self.limits.body_idle_timeout
            self._arm(self.deadline)
            return
        self.clock = NO_CLOCK
        if clock == KEEPALIVE or clock == LINGERING:
            self.transport.close()
        elif clock in (FIRST_HEAD, NEXT_HEAD):
            self._refuse(408, f"Request timeout: no complete request head within "
                              f"{self.limits.head_timeout:g} s.", "head_timeout")
        elif clock == BODY_IDLE:
            self._body_idle()

    def _body_idle(self) -> None:
        cycle = self.cycle
        secs = f"{self.limits.body_idle_timeout:g} s"
        if cycle is None or cycle.response_complete:
            self.transport.close()  # answered already; the rest of the body never came
            return
        if not cycle.response_started:
            self._abort_cycle(f"request body idle for {secs}: answered 408 and closed", status=408)
            self._refuse(408, f"Request timeout: the request body paused for more than {secs}.",
                         "body_idle_timeout")
        else:
            self._abort_cycle(f"request body idle for {secs} while answering: connection closed")
            self._throttled_log("body_idle_timeout", "closing a connection: request body idle for %s", secs)
            self.transport.close()

    # -- refusing ----------------------------------------------------------------
    def _refuse_head(self, verdict: Verdict) -> None:
        self._refuse(verdict.status, verdict.message, verdict.limit)

    def _bad_request(self, message: str) -> None:
        self._refuse(400, message, "malformed")

    def _refuse_at_limit(self) -> None:
        self._refuse(503, "The gateway is at its connection limit; try again shortly.", "max_connections")

    def _refuse(self, status: int, message: str, limit: str) -> None:
        """Answer ``status`` for a request the app never had, and close."""
        self._throttled_log(limit, "refused %s (%s): %d", self._peer(), limit, status)
        self._set_clock(NO_CLOCK)
        self.slots.forget(self)
        active = self.active
        self.refused = True
        if active is not None and not active.response_complete and not active.disconnected:
            # An earlier request's answer is still going out: nothing can be
            # written in between. The refusal follows it, and ends the connection.
            self.close_after_response = True
            self.pending = (status, message)
            return
        self._write_refusal(status, message)

    def _write_refusal(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}, separators=(",", ":")).encode() + b"\n"
        self.transport.write(b"".join((
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
            b"\r\nconnection: close\r\ndate: ", http_date(), b"\r\n\r\n", body)))
        self._linger()

    def _linger(self) -> None:
        """Half-close and drain for a moment: closing with unread input would
        reset the connection and the client could lose the answer."""
        if self.slots.lingering >= LINGER_BUDGET or not self.transport.can_write_eof():
            self.transport.close()
            return
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError):
            self.transport.close()
            return
        self.lingering = True
        self.slots.lingering += 1
        self._set_clock(LINGERING, LINGER)

    def eof_received(self) -> None:
        if self.refused:
            self.transport.close()

    def _malformed(self, detail: str) -> None:
        """A parse error. Who has the request decides what the client is told."""
        reason = f"malformed request ({detail})"
        if self.phase != BODY:
            self._bad_request(f"Invalid HTTP request received: {_short(detail)}.")
            return
        cycle = self.cycle
        if isinstance(cycle, EdgeCycle) and not cycle.app_started:
            # Broken before the app ran (e.g. in the same read as the head):
            # nothing was forwarded, so a plain 400 is the truth.
            if cycle.task is not None:
                cycle.task.cancel()
            elif self.pipeline and self.pipeline[0][0] is cycle:
                self.pipeline.popleft()  # queued behind an answer in progress: drop it alone
            if self.active is cycle:
                self.active = None
            self._bad_request(f"Invalid HTTP request received: {_short(detail)}.")
            return
        # The app has it and may have sent it upstream: never a 400 for a
        # request that may have run. The app sees the client leave.
        self._abort_cycle(f"{reason} after the request was handed over: connection closed")
        self._throttled_log("malformed_body", "closing %s: %s after the request was handed over",
                            self._peer(), reason)
        self.refused = True
        self._set_clock(NO_CLOCK)
        self.transport.close()

    def _abort_cycle(self, reason: str, status: int | None = None) -> None:
        cycle = self.cycle
        if cycle is None:
            return
        extensions: Any = cycle.scope.get("extensions")  # uvicorn types its values as dicts
        if extensions is not None:  # the app's scope and its copies hold this very dict
            note = extensions.get(EDGE_KEY)
            if note is None:
                extensions[EDGE_KEY] = EdgeNote(reason, status)
            else:
                note.reason, note.status = reason, status
        if not cycle.response_complete:
            if isinstance(cycle, EdgeCycle):
                cycle.flush_head()  # a held head goes out before the edge closes
            cycle.disconnected = True
        cycle.message_event.set()
        if isinstance(cycle, EdgeCycle):
            cycle.tell_disconnected()

    # -- trailers ------------------------------------------------------------------
    def _count_trailer(self, size: int) -> None:
        self.trailer_fields += 1
        self.trailer_size += size
        limits = self.limits
        if (self.trailer_fields > limits.header_count or size > limits.header_line
                or self.trailer_size > limits.head_size):
            raise _TrailersTooLarge("trailer section over the header limits")

    def _check_trailer_tail(self, piece: bytes) -> None:
        """Between the last chunk's size line and the end of the body, httptools
        buffers an unfinished trailer field: bound it as a header line."""
        if not (self.chunk_open and not self.chunk_data):
            self.trailer_tail = 0
            return
        nl = piece.rfind(b"\n")
        self.trailer_tail = self.trailer_tail + len(piece) if nl < 0 else len(piece) - nl - 1
        if (self.trailer_tail > self.limits.header_line
                or self.trailer_size + self.trailer_tail > self.limits.head_size):
            self._malformed("trailer section over the header limits")

    # -- helpers -------------------------------------------------------------------
    def _note(self, reason: str) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._abort_cycle(reason)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    def _throttled_log(self, kind: str, fmt: str, *args: Any) -> None:
        events.count(kind)  # every one, for gateway_edge_events_total; the log is throttled
        _log_throttle.log(kind, fmt, *args)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The body's length when it is length-delimited, 0 when the request has
    no body (neither header: RFC 9112 §6.3), else -1 (chunked, or a length
    that is no number). llhttp has already refused duplicates and
    Content-Length with chunked."""
    length = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            return -1
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
    return length


def _short(detail: str) -> str:
    return detail.rstrip(".")[:120]


class _LogThrottle:
    """At most one line per kind per second: a flood must not flood the log."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.dropped: dict[str, int] = {}

    def log(self, kind: str, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -math.inf) < 1.0:
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            return
        dropped = self.dropped.pop(kind, 0)
        self.last[kind] = now
        if dropped:
            fmt += " (and %d more like it in the last second)"
            args = (*args, dropped)
        log.warning(fmt, *args)


_log_throttle = _LogThrottle()
