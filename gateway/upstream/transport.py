"""A lean HTTP/1.1 transport for httpx, built on asyncio protocols and httptools.

Why not httpx's default transport: measured here, a proxy built on httpcore spends
most of its CPU in the connection pool (which rescans every connection per
request) and in anyio. This transport keeps httpx as the API — requests and
responses are ``httpx.Request``/``httpx.Response``, errors are httpx's exception
classes, so respx and ``httpx.MockTransport`` stand in for it in unit tests —
but does the I/O with an ``asyncio.Protocol`` per connection (``connection``),
httptools (llhttp) to parse responses (``http11``), and an O(1) pool of idle
connections per origin (``pool``).

It is deliberately literal, which is what a transparent proxy needs:

* the request line uses ``url.raw_path`` byte for byte, and exactly the headers
  given are written, in order (no Host, User-Agent or Accept-* is added);
* response headers come back as the raw list, in order, with their case, and
  repeated headers (``Set-Cookie``) stay separate;
* bodies stream both ways undecoded, with flow control: a slow reader pauses
  the upstream socket instead of buffering the whole body.

And it holds the upstream to bounds (all constructor arguments, wired from
routes.yaml by ``forwarders``): the response head's size, field count and
interim answers (``http11.HeadLimits``; a 101 is refused too), a request body
that stalls for ``body_idle_timeout`` s frees its connection, and requests
with a body may hold at most ``body_pool_share`` of the pool, so requests
without one always find a connection (``pool``).

``https://`` legacy URLs take the same road, over asyncio's TLS transport:
the same pool, limits and flow control. Certificates are verified as httpx
verifies them (``httpx.create_ssl_context``: certifi's CAs, or the bundle
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name), the host name included.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Hashable
from typing import cast

import httpx

from .connection import Connection, Origin, RequestBodyStalled
from .http11 import HeadLimits, encode_head
from .httpx_fast import headers_from_fields, new_response
from .pool import ConnectionPool

_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, conn: Connection, timeout: float):
        self._conn = conn
        self._timeout = timeout
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.body(self._timeout):
                yield chunk
        except BaseException:
            self._conn.give_up_reuse()
            raise

    def at_end(self) -> bool:
        return self._conn.at_end()

    def take_whole(self) -> bytes | None:
        """The whole body when it is all in already, else None (see Connection.take_whole)."""
        return self._conn.take_whole()

    def close_now(self) -> None:
        """:meth:`aclose` without a coroutine (the forwarder's way: it is a
        release to the pool, nothing to await)."""
        if not self._closed:
            self._closed = True
            self._conn.release()

    async def aclose(self) -> None:
        self.close_now()


class FastTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 keep-alive transport, over TCP or TLS."""

    def __init__(
        self,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 60.0,
        max_connections: int = 512,
        body_pool_share: float = 0.5,
        body_idle_timeout: float | None = 30.0,
        head_size: int = HeadLimits.head_size,
        header_count: int = HeadLimits.header_count,
        interim_responses: int = HeadLimits.interim_responses,
    ):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.body_idle_timeout = body_idle_timeout  # s without a request-body byte; None: no limit
        self.head_limits = HeadLimits(head_size, header_count, interim_responses)
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            self._connect, max_connections=max_connections, acquire_timeout=connect_timeout,
            body_share=body_pool_share)
        self._tls: ssl.SSLContext | None = None  # made at the first https connection

    @property
    def open_connections(self) -> int:
        return self.pool.open_connections

    @property
    def idle_connections(self) -> int:
        return self.pool.idle_connections

    @property
    def body_connections(self) -> int:
        """Connections held by requests with a body (at most ``pool.max_body_connections``)."""
        return self.pool.body_connections

    async def _connect(self, key: Hashable) -> Connection:
        origin = cast(Origin, key)  # the pool hands back the keys we gave it
        host, port, tls = origin
        conn = Connection(self.pool, origin, self.head_limits)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow an
            # outer cancel (the client went away) when the connect completes at
            # the same moment, leaving an abandoned request running upstream.
            # The TLS handshake is part of the connect, within the same bound.
            async with asyncio.timeout(self.connect_timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: conn, host, port, ssl=self._tls_context() if tls else None,
                    server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {host}:{port} within {self.connect_timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise httpx.ConnectError(
                f"TLS to {host}:{port}: the legacy backend's certificate was refused ({exc.verify_message}); "
                "check that legacy.url names a host the certificate is for, and give a private CA that "
                "signed it in SSL_CERT_FILE") from None
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = httpx.create_ssl_context()  # what httpx would verify with
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    # -- httpx.AsyncBaseTransport --------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme == "http":
            key: Origin = (url.host, url.port or 80, False)
        elif scheme == "https":
            key = (url.host, url.port or 443, True)
        else:
            raise httpx.UnsupportedProtocol(f"{scheme}:// is not a legacy URL the gateway speaks (http or https)")
        head, body_mode = encode_head(request)
        attempt = 0
        while True:
            attempt += 1
            has_body = body_mode != "none"
            # An idle connection is taken without a coroutine; acquire() waits or connects.
            conn = self.pool.try_acquire(key, body=has_body)
            reused = conn is not None
            if conn is None:
                conn, reused = await self.pool.acquire(key, body=has_body)
            try:
                try:
                    if has_body:
                        await conn.send(request, head, body_mode, self.read_timeout, self.body_idle_timeout)
                    else:
                        conn.send_head(head, request.method == "HEAD")
                except (httpx.WriteError, RequestBodyStalled):
                    # The upstream answered early and closed while we were still
                    # sending (Go does this past 256 KiB unread), or answered
                    # before the client stalled: the answer wins (the request
                    # may have run; the client must hear how it ended).
                    if not conn.answered:
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
            return new_response(conn.status, headers_from_fields(conn.fields), _ResponseStream(conn, self.read_timeout),
                                request, {"http_version": b"HTTP/1.1"})

    def retire(self) -> None:
        """No new work (a reload replaced this pool): close idle connections now,
        busy ones when their response is done — never under a request."""
        self.pool.retire()

    async def aclose(self) -> None:
        self.pool.close_all()
