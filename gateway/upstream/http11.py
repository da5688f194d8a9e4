"""HTTP/1.1 on the upstream hop, without I/O: the request head we write and the
response we read.

``encode_head`` writes the request line and headers exactly as given (a
transparent proxy adds nothing). ``ResponseReader`` is fed the bytes of one
connection and holds the state of the response being read; llhttp (httptools)
does the parsing. What the bytes mean for the socket (wake a waiter, pause
reading) is the connection's business: the reader tells its ``ReaderEvents``.

The reader trusts the upstream only so far (``HeadLimits``): a response head
(with any interim 1xx answers before it) or a trailer section larger than
``head_size`` bytes or with more than ``header_count`` fields, more than
``interim_responses`` 1xx answers, or a 101 Switching Protocols (the gateway
never forwards ``Upgrade``) raise ``UpstreamRefused`` — a
``RemoteProtocolError``, so the connection is aborted — and the forwarder
answers 502. The checks are a counter comparison per ``feed`` and per header:
llhttp is never given more head bytes than the limit, so httptools (which
joins a header's pieces by concatenation) never holds more than that.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import httptools
import httpx

from .headers import is_chunked
from .httpx_fast import header_triples

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})  # the fields that frame a body


def encode_head(request: httpx.Request) -> tuple[bytes, str]:
    """Request line + headers exactly as given; also how the body is framed:
    ``"none"``, ``"length"`` or ``"chunked"``."""
    body_mode = "none"
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, lname, value in header_triples(request.headers):
        if lname in _FRAMING:  # one set lookup for the common header
            if lname == b"content-length":
                body_mode = "length" if value.strip() != b"0" else body_mode
            elif is_chunked(value):
                body_mode = "chunked"
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), body_mode


@dataclass(frozen=True)
class HeadLimits:
    """How much head the upstream may send (limits.upstream_* in routes.yaml)."""

    head_size: int = 65536  # bytes: status line + fields + interim answers; a trailer section alike
    header_count: int = 200  # fields in the head (interim answers' included); in a trailer section
    interim_responses: int = 10  # 1xx answers before the final one


DEFAULT_HEAD_LIMITS = HeadLimits()


class UpstreamRefused(httpx.RemoteProtocolError):
    """The upstream's answer broke a limit or a rule the gateway holds it to.

    ``limit`` names the setting (for the log and metrics), ``what`` says what
    the upstream sent in words fit for any client; the message has the numbers."""

    def __init__(self, limit: str, what: str, detail: str):
        super().__init__(detail)
        self.limit = limit
        self.what = what


class ReaderEvents(Protocol):
    """What a connection hears from its reader while bytes are parsed."""

    def head_received(self) -> None: ...

    def body_received(self) -> None: ...

    def message_complete(self) -> None: ...


class _AfterResponse(Exception):
    """Raised from a parser callback to stop parsing past the end of our response."""


class ResponseReader:
    """The response being read off one connection (one request at a time).

    One llhttp parser per connection: it starts the next message by itself
    after a complete one (connections that end otherwise are not reused).

    Head bytes are counted in ``feed`` while a header section is open: from
    the start of the response until the final head is complete (interim 1xx
    answers included), and from a chunk-size line until that chunk's data (a
    last chunk's trailer section). ``_room`` is what that section may still
    take; a ``feed`` that would go past it parses only up to the limit first.
    """

    def __init__(self, events: ReaderEvents, limits: HeadLimits = DEFAULT_HEAD_LIMITS) -> None:
        self._events = events
        self._parser = httptools.HttpResponseParser(self)
        self.limits = limits
        self._head_size = limits.head_size
        self._header_count = limits.header_count
        self._interim_max = limits.interim_responses
        self.start(head_only=False)

    def start(self, head_only: bool) -> None:
        """Forget the previous response; the next bytes answer a new request."""
        self.head_only = head_only
        self.status = 0
        # (name as sent, lower-cased name, value): lower-cased once, here, for
        # every later reader (httpx keeps headers this way too).
        self.fields: list[tuple[bytes, bytes, bytes]] = []
        self._framed = False  # Content-Length or Transfer-Encoding among them
        self.head_done = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0  # bytes in ``chunks``
        self.complete = False
        self.got_bytes = False
        self.keep_alive = False
        self.until_eof = False  # body delimited by the upstream closing the connection
        self.refused: UpstreamRefused | None = None
        self._counting = True  # a header section (head or trailers) is open
        self._section = 0  # which one: a new section starts a new count
        self._room = self._head_size  # bytes the open section may still take
        self._fields = 0  # fields in the open section
        self._interim = 0  # 1xx answers so far

    def feed(self, data: bytes) -> bool:
        """Parse ``data``. False when bytes arrived past our response: it
        stands, but the connection's framing can't be trusted again.
        Raises ``httpx.RemoteProtocolError`` for a malformed response and
        ``UpstreamRefused`` for one over the limits."""
        self.got_bytes = True
        if self.complete:
            return False
        try:
            if not self._counting:
                self._parser.feed_data(data)
            elif len(data) <= self._room:
                self._room -= len(data)
                self._parser.feed_data(data)
            else:
                self._feed_up_to_limit(data)
        except httptools.HttpParserError as exc:
            if self.refused is not None:
                raise self.refused from None
            if self.complete:
                return False  # our callbacks stopped the parser after the response
            raise httpx.RemoteProtocolError(f"malformed upstream response: {exc}") from None
        return True

    def _feed_up_to_limit(self, data: bytes) -> None:
        """Parse ``data`` when the open header section might end past its limit:
        up to the limit first, and the rest only if the section closed by then."""
        view = memoryview(data)
        while True:
            room, section = self._room, self._section
            self._room = 0
            self._parser.feed_data(view[:room])
            if self._counting and self._section == section:
                in_head = not self.head_done
                raise self._refuse(
                    "upstream_head_size",
                    "response headers larger than the gateway accepts" if in_head
                    else "a trailer section larger than the gateway accepts",
                    f"upstream {'response head' if in_head else 'trailer section'} over "
                    f"{self._head_size} bytes (limit upstream_head_size)")
            view = view[room:]
            if not view:
                return
            if not self._counting or len(view) <= self._room:
                if self._counting:
                    self._room -= len(view)
                self._parser.feed_data(view)
                return

    def _refuse(self, limit: str, what: str, detail: str) -> UpstreamRefused:
        self.keep_alive = False
        self.refused = UpstreamRefused(limit, what, detail)
        return self.refused

    def take_chunk(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        return chunk

    def end_of_stream(self) -> bool:
        """The upstream closed: True when that ends a close-delimited body
        (RFC 9112 §6.3: no length, not chunked — the close ends the body)."""
        if not self.complete and self.until_eof and self.head_done:
            self.complete = True
        return self.complete

    # -- httptools callbacks ------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            raise _AfterResponse  # a second response in the same read: not ours
        self._fields += 1
        if self._fields > self._header_count:
            raise self._refuse(
                "upstream_header_count", "more header fields than the gateway accepts",
                f"upstream sent more than {self._header_count} header fields in "
                f"{'its response head' if not self.head_done else 'a trailer section'} "
                "(limit upstream_header_count)")
        if not self.head_done:
            lname = name.lower()
            if lname in _FRAMING:
                self._framed = True
            self.fields.append((name, lname, value))
        # Trailer fields are dropped: they are never relayed (the client's
        # answer is re-framed by uvicorn), only counted.

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _AfterResponse
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise self._refuse(
                    "upgrade", "101 Switching Protocols, which the gateway never asks for",
                    "upstream answered 101 Switching Protocols, but the gateway never forwards "
                    "Upgrade (it is hop-by-hop): refused")
            self._interim += 1
            if self._interim > self._interim_max:
                raise self._refuse(
                    "upstream_interim_responses", "more interim (1xx) answers than the gateway accepts",
                    f"upstream sent more than {self._interim_max} interim 1xx answers before its response")
            self.fields = []  # interim response (100 Continue, 103): skip it
            self._framed = False
            return
        self.status = status
        self._counting = False
        self.keep_alive = self._parser.should_keep_alive()
        if not self.head_only and status not in (204, 304):
            self.until_eof = not self._framed
        self.head_done = True
        if self.head_only:
            # A HEAD response carries no body whatever its Content-Length says;
            # llhttp can't be told that, so end here and don't reuse the socket.
            self.keep_alive = False
            self.complete = True
        self._events.head_received()

    def on_chunk_header(self) -> None:
        # Until this chunk's data arrives, what follows may be the last
        # chunk's trailer section: count it like a head.
        self._counting = True
        self._section += 1
        self._room = self._head_size
        self._fields = 0

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _AfterResponse
        self._counting = False
        self.chunks.append(body)
        self.buffered += len(body)
        self._events.body_received()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # end of an interim 1xx message
        self._counting = False
        self.complete = True
        self._events.message_complete()
