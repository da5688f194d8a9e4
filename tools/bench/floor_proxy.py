"""The floor: the least CPU a Python reverse proxy can spend on a request here.

Not a proxy anyone should run: it is the yardstick for what the gateway's own
work costs on top of the work no Python proxy can skip. uvloop and httptools
on both hops, parser callbacks only (no ASGI, no coroutine or task per
request, no httpx objects), one upstream keep-alive connection per client
connection. The request head is re-encoded without the hop-by-hop
``Connection`` / ``Keep-Alive`` and with an ``X-Forwarded-For``; the answer's
bytes are relayed as they arrive, unparsed but for finding where a response
ends. No request body, no limits, no timeouts, no logs, no errors answered:
``make bench`` only sends it bodiless GETs.

    python -m tools.bench.floor_proxy --upstream http://127.0.0.1:PORT --port 8002
"""
from __future__ import annotations

import argparse
import asyncio
from typing import cast
from urllib.parse import urlsplit

import httptools
import uvloop

_DROP = frozenset({b"connection", b"keep-alive"})


def _feed(parser: httptools.HttpRequestParser | httptools.HttpResponseParser,
          transport: asyncio.Transport | None, data: bytes) -> None:
    """Parse ``data``; what does not parse ends the connection."""
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        if transport is not None:
            transport.close()


class _Upstream(asyncio.Protocol):
    """One client connection's upstream connection: answers relayed as they come."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        # Parsed only to know where each answer ends, as any proxy must (no callbacks).
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: no asyncio.Transport subclass
        if self.client.waiting:
            self.transport.write(b"".join(self.client.waiting))
            self.client.waiting.clear()

    def data_received(self, data: bytes) -> None:
        client = self.client.transport
        if client is not None and not client.is_closing():
            client.write(data)
        _feed(self.parser, self.transport, data)

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client.transport
        if client is not None:
            client.close()


class _Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_address = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.waiting: list[bytes] = []  # heads written before the upstream connection is up
        self.peer = b"unknown"
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = peer[0].encode()

    def data_received(self, data: bytes) -> None:
        _feed(self.parser, self.transport, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    # -- parser callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        lines = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            if name.lower() not in _DROP:
                lines += (name, b": ", value, b"\r\n")
        lines += (b"x-forwarded-for: ", self.peer, b"\r\n\r\n")
        head = b"".join(lines)
        upstream = self.upstream
        if upstream is None:
            self.upstream = upstream = _Upstream(self)
            loop = asyncio.get_running_loop()
            host, port = self.upstream_address
            loop.create_task(loop.create_connection(lambda: upstream, host, port))
        if upstream.transport is None:
            self.waiting.append(head)
        else:
            upstream.transport.write(head)


async def serve(upstream: str, host: str, port: int) -> None:
    parts = urlsplit(upstream)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(address), host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.host, args.port))


if __name__ == "__main__":
    main()
