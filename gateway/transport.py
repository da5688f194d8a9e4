"""A lean HTTP/1.1 transport for httpx, built on asyncio protocols and httptools.

Why not httpx's default transport: measured here, a proxy built on httpcore spends
most of its CPU in the connection pool (which rescans every connection per
request) and in anyio. This transport keeps httpx as the API — requests and
responses are ``httpx.Request``/``httpx.Response``, errors are httpx's exception
classes, so respx and ``httpx.MockTransport`` stand in for it in unit tests —
but does the I/O with an ``asyncio.Protocol`` per connection, httptools (llhttp)
to parse responses, and an O(1) idle-connection stack per origin.

It is deliberately literal, which is what a transparent proxy needs:

* the request line uses ``url.raw_path`` byte for byte, and exactly the headers
  given are written, in order (no Host, User-Agent or Accept-* is added);
* response headers come back as the raw list, in order, with their case, and
  repeated headers (``Set-Cookie``) stay separate;
* bodies stream both ways undecoded, with flow control: a slow reader pauses
  the upstream socket instead of buffering the whole body.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import AsyncIterator

import httptools
import httpx

from .httpx_fast import raw_headers

_READ_HIGH_WATER = 256 * 1024  # pause the upstream socket above this many buffered bytes
_IDLE_MAX_AGE = 30.0  # seconds an idle keep-alive connection may be reused
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class _AfterResponse(Exception):
    """Raised from a parser callback to stop parsing past the end of our response."""


class _Connection(asyncio.Protocol):
    """One upstream TCP connection carrying one request at a time."""

    def __init__(self, pool: "FastTransport", key: tuple[str, int]):
        self.pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._reset_for_response(head_only=False)

    # -- per-response state ------------------------------------------------
    def _reset_for_response(self, head_only: bool) -> None:
        # One parser per connection: llhttp starts the next message by itself
        # after a complete one (connections that end otherwise are not reused).
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done: asyncio.Future[None] = self.loop.create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.error: BaseException | None = None
        self.got_bytes = False
        self.keep_alive = False
        self.until_eof = False  # body delimited by the upstream closing the connection
        self.request_done = False  # the whole request (body included) was written
        self._body_waiter: asyncio.Future[None] | None = None
        self._read_paused = False

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.complete:
            self._discard()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:
                self._discard()  # our callbacks stopped the parser after the response
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed upstream response: {exc}"))

    def _discard(self) -> None:
        """Bytes after a complete response (or after a HEAD's headers): the
        response stands, but the connection's framing can't be trusted again."""
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.until_eof and self.headers_done.done() and self.error is None:
            # RFC 9112 §6.3: no length, not chunked — the close ends the body.
            self.complete = True
            self._wake_body()
        if not self.complete:
            if not self.got_bytes:
                err: BaseException = httpx.RemoteProtocolError("upstream closed the connection without a response")
            elif not self.headers_done.done():
                err = httpx.RemoteProtocolError("upstream closed the connection mid-headers")
            else:
                err = httpx.ReadError("upstream connection closed before the response body was complete")
            self._fail(err)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # -- httptools callbacks ------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            raise _AfterResponse  # a second response in the same read: not ours
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _AfterResponse
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # interim response (100 Continue, 103): skip it
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if not self.head_only and status not in (204, 304):
            names = {n.lower() for n, _ in self.headers}
            self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        if not self.headers_done.done():
            self.headers_done.set_result(None)
        # An early answer (401, 413, ...) ends the upload: stop waiting to write.
        self._wake_drain()
        if self.head_only:
            # A HEAD response carries no body whatever its Content-Length says;
            # llhttp can't be told that, so end here and don't reuse the socket.
            self.keep_alive = False
            self.complete = True
            self._wake_body()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _AfterResponse
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _READ_HIGH_WATER and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # end of an interim 1xx message
        self.complete = True
        self._wake_body()

    # -- helpers ------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
            self.headers_done.exception()  # mark retrieved: the caller may be gone
        self.keep_alive = False
        self._wake_body()
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _wake_body(self) -> None:
        w = self._body_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_drain(self) -> None:
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _drain(self, timeout: float) -> None:
        if self.headers_done.done():
            return  # answered already: the caller stops sending
        if self.closed:
            raise httpx.WriteError("upstream connection closed while sending the request")
        if self._write_paused:
            self._drain_waiter = self.loop.create_future()
            # A backend that stops reading must not hold the request forever.
            await self._wait(self._drain_waiter, timeout, "accepting the request body", httpx.WriteTimeout)
            if self.closed and not self.headers_done.done():
                raise httpx.WriteError("upstream connection closed while sending the request")

    async def _wait(self, fut: asyncio.Future[None], timeout: float, what: str,
                    error: type[httpx.TimeoutException] = httpx.ReadTimeout) -> None:
        timer = self.loop.call_later(timeout, _timeout, fut, what, error)
        try:
            await fut
        finally:
            timer.cancel()

    # -- request / response -------------------------------------------------
    async def send(self, request: httpx.Request, head: bytes, body_mode: str, timeout: float) -> None:
        assert self.transport is not None
        self._reset_for_response(head_only=request.method == "HEAD")
        self.transport.write(head)
        if body_mode == "none":
            self.request_done = True
            return
        chunked = body_mode == "chunked"
        async for chunk in request.stream:  # type: ignore[union-attr]
            if not chunk:
                continue
            if self.closed or self.headers_done.done():
                break  # upstream already answered (or went away): stop sending
            if chunked:
                self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                self.transport.write(chunk)
            await self._drain(timeout)
        else:
            # Only a fully written request leaves the connection reusable: a
            # half-sent body would be read as the start of the next request.
            if not self.closed:
                if chunked:
                    self.transport.write(b"0\r\n\r\n")
                self.request_done = True

    async def receive_head(self, timeout: float) -> None:
        if not self.headers_done.done():
            await self._wait(self.headers_done, timeout, "waiting for the response headers")
        else:
            self.headers_done.result()

    async def body(self, timeout: float) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self._read_paused and self.buffered < _READ_HIGH_WATER // 2 and self.transport:
                    self._read_paused = False
                    self.transport.resume_reading()
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if self.complete:
                return
            self._body_waiter = self.loop.create_future()
            await self._wait(self._body_waiter, timeout, "reading the response body")

    def at_end(self) -> bool:
        """Nothing buffered and nothing more to come: the last chunk was handed out."""
        return self.complete and not self.chunks and self.error is None

    def release(self) -> None:
        """Return to the pool when reusable, else close."""
        if (self.complete and self.keep_alive and self.request_done and self.error is None
                and not self.closed and not self.pool.retired):
            self.idle_since = self.loop.time()
            self.pool._release(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()
        self.closed = True
        self.pool._forget(self)


def _timeout(fut: asyncio.Future[None], what: str, error: type[httpx.TimeoutException]) -> None:
    if not fut.done():
        fut.set_exception(error(f"upstream timed out {what}"))


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, conn: _Connection, timeout: float):
        self._conn = conn
        self._timeout = timeout
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.body(self._timeout):
                yield chunk
        except BaseException:
            self._conn.keep_alive = False
            raise

    def at_end(self) -> bool:
        return self._conn.at_end()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.release()


class FastTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 keep-alive transport (plain HTTP; https falls back to httpx's)."""

    def __init__(self, *, connect_timeout: float = 2.0, read_timeout: float = 60.0, max_connections: int = 512):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tls: httpx.AsyncHTTPTransport | None = None
        self.retired = False

    # -- pool ---------------------------------------------------------------
    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def _release(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_waiter()

    def _forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def _acquire(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.closed or conn.transport is None or conn.transport.is_closing():
                    conn.close()
                    continue
                if conn.loop.time() - conn.idle_since > _IDLE_MAX_AGE:
                    conn.close()
                    continue
                return conn, True
            if len(self._open) < self.max_connections:
                return await self._connect(key), False
            if self._evict_other_idle(key):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise httpx.PoolTimeout(
                    f"all {self.max_connections} upstream connections are busy (raise legacy.pool_size)"
                )
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass

    def _evict_other_idle(self, key: tuple[str, int]) -> bool:
        for other, conns in self._idle.items():
            if other != key and conns:
                conns.pop().close()
                return True
        return False

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = key
        conn = _Connection(self, key)
        self._open.add(conn)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow an
            # outer cancel (the client went away) when the connect completes at
            # the same moment, leaving an abandoned request running upstream.
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, host, port)
        except TimeoutError:
            self._forget(conn)
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} within {self.connect_timeout:g} s") from None
        except OSError as exc:
            self._forget(conn)
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc.strerror or exc}") from None
        except BaseException:
            self._forget(conn)
            raise
        return conn

    # -- httpx.AsyncBaseTransport --------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return await self._tls_transport().handle_async_request(request)
        key = (url.host, url.port or 80)
        head, body_mode = _encode_head(request)
        attempt = 0
        while True:
            attempt += 1
            conn, reused = await self._acquire(key)
            try:
                try:
                    await conn.send(request, head, body_mode, self.read_timeout)
                except httpx.WriteError:
                    # The upstream answered early and closed while we were still
                    # sending (Go does this past 256 KiB unread): the answer wins.
                    if not (conn.headers_done.done() and conn.headers_done.exception() is None):
                        raise
                await conn.receive_head(self.read_timeout)
            except (httpx.RemoteProtocolError, httpx.WriteError) as exc:
                conn.close()
                # A reused keep-alive socket the upstream closed while idle: retry
                # once on a fresh one — only for safe methods without a body,
                # which can't have had an effect upstream.
                if (reused and body_mode == "none" and request.method in _RETRYABLE
                        and not conn.got_bytes and attempt == 1):
                    continue
                raise exc
            except BaseException:
                conn.close()
                raise
            return httpx.Response(
                conn.status,
                headers=raw_headers(conn.headers),
                stream=_ResponseStream(conn, self.read_timeout),
                extensions={"http_version": b"HTTP/1.1"},
                request=request,
            )

    def _tls_transport(self) -> httpx.AsyncHTTPTransport:
        if self._tls is None:
            self._tls = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=self.max_connections),
                retries=0,
            )
        return self._tls

    def retire(self) -> None:
        """No new work (a reload replaced this pool): close idle connections now,
        busy ones when their response is done — never under a request."""
        self.retired = True
        for conns in self._idle.values():
            for conn in list(conns):
                conn.close()
        self._idle.clear()

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        if self._tls is not None:
            await self._tls.aclose()


def _encode_head(request: httpx.Request) -> tuple[bytes, str]:
    """Request line + headers exactly as given; also how the body is framed."""
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
