"""One upstream TCP connection carrying one request at a time.

An ``asyncio.Protocol``: it writes the request (waiting while the socket's
buffer is full), hands received bytes to its ``ResponseReader``, and pauses
reading while the client is slower than the upstream, so a large response is
never buffered whole. When the response is done it goes back to its pool, or
closes when the framing can't be trusted for another request.

While it writes a request body it waits for the client's next chunk at most
``body_idle`` seconds: a client that stops sending can't hold a pooled
connection (``RequestBodyStalled``; the connection is closed, never reused).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from .http11 import DEFAULT_HEAD_LIMITS, HeadLimits, ResponseReader

READ_HIGH_WATER = 256 * 1024  # pause the upstream socket above this many buffered bytes
WHOLE_MAX = 64 * 1024  # a complete body up to this size is handed over in one piece (take_whole)

Origin = tuple[str, int, bool]  # host, port, TLS


class RequestBodyStalled(httpx.WriteTimeout):
    """The client sent no request-body byte for ``idle`` seconds while we were
    relaying its body upstream; the half-sent request can't be completed."""

    def __init__(self, idle: float):
        super().__init__(f"no request body byte from the client for {idle:g} s")
        self.idle = idle


class Owner(Protocol):
    """Where a connection goes when its response is done (its pool)."""

    retired: bool

    def release(self, conn: Connection) -> None: ...

    def discard(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, owner: Owner, key: Origin, limits: HeadLimits = DEFAULT_HEAD_LIMITS):
        self.owner = owner
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self.reader = ResponseReader(self, limits)
        self._begin(head_only=False)

    def _begin(self, head_only: bool) -> None:
        self.reader.start(head_only)
        self.headers_done: asyncio.Future[None] = self.loop.create_future()
        self.error: BaseException | None = None
        self.request_done = False  # the whole request (body included) was written
        self._body_waiter = None
        self._read_paused = False

    # -- what the pool asks ---------------------------------------------------
    def is_usable(self) -> bool:
        """Still open and quiet: safe to carry the next request."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    @property
    def status(self) -> int:
        return self.reader.status

    @property
    def fields(self) -> list[tuple[bytes, bytes, bytes]]:
        """The response's (name, lower-cased name, value) header fields."""
        return self.reader.fields

    @property
    def got_bytes(self) -> bool:
        return self.reader.got_bytes

    @property
    def answered(self) -> bool:
        """The upstream's response head is in (possibly before the request was all sent)."""
        return self.headers_done.done() and self.headers_done.exception() is None

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            ours = self.reader.feed(data)
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            return
        if not ours:
            self._discard()

    def _discard(self) -> None:
        """Bytes after a complete response (or after a HEAD's headers): the
        response stands, but the connection can't carry another request."""
        self.reader.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.error is None and self.reader.end_of_stream():
            self._wake_body()
        if not self.reader.complete:
            if not self.reader.got_bytes:
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

    # -- ReaderEvents -------------------------------------------------------
    def head_received(self) -> None:
        if not self.headers_done.done():
            self.headers_done.set_result(None)
        # An early answer (401, 413, ...) ends the upload: stop waiting to write.
        self._wake_drain()
        if self.reader.complete:
            self._wake_body()

    def body_received(self) -> None:
        if self.reader.buffered > READ_HIGH_WATER and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def message_complete(self) -> None:
        self._wake_body()

    # -- helpers ------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
            self.headers_done.exception()  # mark retrieved: the caller may be gone
        self.reader.keep_alive = False
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
    def send_head(self, head: bytes, head_only: bool) -> None:
        """Write a request that has no body (its head is all of it): no
        coroutine for what is one write. ``head_only``: a HEAD request."""
        assert self.transport is not None
        self._begin(head_only=head_only)
        self.transport.write(head)
        self.request_done = True

    async def send(self, request: httpx.Request, head: bytes, body_mode: str, timeout: float,
                   body_idle: float | None = None) -> None:
        """Write a request with a body (one without: :meth:`send_head`); wait
        at most ``body_idle`` s for each chunk of its body."""
        assert self.transport is not None
        self._begin(head_only=request.method == "HEAD")
        self.transport.write(head)
        chunked = body_mode == "chunked"
        chunks = request.stream.__aiter__()  # type: ignore[union-attr]
        while True:
            # The next chunk, or the upstream's answer, whichever comes first: a
            # handler that answers without reading the body (Go's DELETEs) is
            # relayed at once, not when the client's next chunk happens to come.
            next_chunk = asyncio.ensure_future(chunks.__anext__())
            try:
                done, _ = await asyncio.wait((next_chunk, self.headers_done), timeout=body_idle,
                                             return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                next_chunk.cancel()
                raise
            if next_chunk not in done:
                next_chunk.cancel()
                if self.headers_done.done():
                    return  # answered first: stop sending (the half-sent request is never reused)
                raise RequestBodyStalled(body_idle or 0.0)
            try:
                chunk = next_chunk.result()
            except StopAsyncIteration:
                break
            if not chunk:
                continue
            if self.closed or self.headers_done.done():
                return  # upstream already answered (or went away): stop sending
            if chunked:
                self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                self.transport.write(chunk)
            await self._drain(timeout)
        # Only a fully written request leaves the connection reusable: a
        # half-sent body would be read as the start of the next request.
        if not self.closed:
            if chunked:
                self.transport.write(b"0\r\n\r\n")
            self.request_done = True

    async def receive_head(self, timeout: float) -> None:
        done = self.headers_done
        if done.done():
            done.result()
            return
        # _wait, inline: this runs for every request.
        timer = self.loop.call_later(timeout, _timeout, done, "waiting for the response headers", httpx.ReadTimeout)
        try:
            await done
        finally:
            timer.cancel()

    async def body(self, timeout: float) -> AsyncIterator[bytes]:
        reader = self.reader
        while True:
            if reader.chunks:
                chunk = reader.take_chunk()
                if self._read_paused and reader.buffered < READ_HIGH_WATER // 2 and self.transport:
                    self._read_paused = False
                    self.transport.resume_reading()
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if reader.complete:
                return
            self._body_waiter = self.loop.create_future()
            await self._wait(self._body_waiter, timeout, "reading the response body")

    def take_whole(self) -> bytes | None:
        """The whole body in one piece when it is all in and none of it was
        taken yet (a small answer arrives with its head, in one read): the
        forwarder then sends it without stepping the ``body()`` stream. None
        otherwise, or above ``WHOLE_MAX`` bytes (streamed: no joined copy)."""
        reader = self.reader
        if not reader.complete or self.error is not None or reader.buffered > WHOLE_MAX:
            return None
        chunks = reader.chunks
        whole = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        reader.buffered = 0
        return whole

    def at_end(self) -> bool:
        """Nothing buffered and nothing more to come: the last chunk was handed out."""
        return self.reader.complete and not self.reader.chunks and self.error is None

    def give_up_reuse(self) -> None:
        """The response was not read to its end: never reuse this socket."""
        self.reader.keep_alive = False

    def release(self) -> None:
        """Back to the pool when reusable, else close."""
        if (self.reader.complete and self.reader.keep_alive and self.request_done and self.error is None
                and not self.closed and not self.owner.retired):
            self.owner.release(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()
        self.closed = True
        self.owner.discard(self)


def _timeout(fut: asyncio.Future[None], what: str, error: type[httpx.TimeoutException]) -> None:
    if not fut.done():
        fut.set_exception(error(f"upstream timed out {what}"))
