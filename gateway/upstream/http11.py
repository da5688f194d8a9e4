"""HTTP/1.1 on the upstream hop, without I/O: the request head we write and the
response we read.

``encode_head`` writes the request line and headers exactly as given (a
transparent proxy adds nothing). ``ResponseReader`` is fed the bytes of one
connection and holds the state of the response being read; llhttp (httptools)
does the parsing. What the bytes mean for the socket (wake a waiter, pause
reading) is the connection's business: the reader tells its ``ReaderEvents``.
"""
from __future__ import annotations

from collections import deque
from typing import Protocol

import httptools
import httpx

RawHeaders = list[tuple[bytes, bytes]]


def encode_head(request: httpx.Request) -> tuple[bytes, str]:
    """Request line + headers exactly as given; also how the body is framed:
    ``"none"``, ``"length"`` or ``"chunked"``."""
    body_mode = "none"
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lname = name.lower()
        if lname == b"content-length":
            body_mode = "length" if value.strip() != b"0" else body_mode
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            body_mode = "chunked"
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), body_mode


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
    """

    def __init__(self, events: ReaderEvents) -> None:
        self._events = events
        self._parser = httptools.HttpResponseParser(self)
        self.start(head_only=False)

    def start(self, head_only: bool) -> None:
        """Forget the previous response; the next bytes answer a new request."""
        self.head_only = head_only
        self.status = 0
        self.headers: RawHeaders = []
        self.head_done = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0  # bytes in ``chunks``
        self.complete = False
        self.got_bytes = False
        self.keep_alive = False
        self.until_eof = False  # body delimited by the upstream closing the connection

    def feed(self, data: bytes) -> bool:
        """Parse ``data``. False when bytes arrived past our response: it
        stands, but the connection's framing can't be trusted again.
        Raises ``httpx.RemoteProtocolError`` for a malformed response."""
        self.got_bytes = True
        if self.complete:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:
                return False  # our callbacks stopped the parser after the response
            raise httpx.RemoteProtocolError(f"malformed upstream response: {exc}") from None
        return True

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
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _AfterResponse
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # interim response (100 Continue, 103): skip it
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        if not self.head_only and status not in (204, 304):
            names = {n.lower() for n, _ in self.headers}
            self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self.head_done = True
        if self.head_only:
            # A HEAD response carries no body whatever its Content-Length says;
            # llhttp can't be told that, so end here and don't reuse the socket.
            self.keep_alive = False
            self.complete = True
        self._events.head_received()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _AfterResponse
        self.chunks.append(body)
        self.buffered += len(body)
        self._events.body_received()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # end of an interim 1xx message
        self.complete = True
        self._events.message_complete()
