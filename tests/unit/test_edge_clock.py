"""The edge protocol's one clock (gateway/edge/protocol.py), driven in process:
which deadlines a request arms. Its timeouts themselves are tested on the wire
(tests/wire/test_edge_limits.py)."""
from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.edge import protocol as edge
from tests.support.fake_transport import FakeTransport


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("request_bytes,body_clock", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),  # no body: the parser ends the request at its head
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", True),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", True),
])
def test_only_a_request_with_a_body_arms_the_body_idle_clock(monkeypatch, request_bytes, body_clock):
    # A deadline costs a clock read and a timer check a request: a request
    # without a body has no body to be idle in, so it must not pay for one.
    armed: list[int] = []
    set_clock = edge.EdgeProtocol._set_clock

    def spy(self: edge.EdgeProtocol, kind: int, seconds: float = math.inf) -> None:
        armed.append(kind)
        set_clock(self, kind, seconds)

    monkeypatch.setattr(edge.EdgeProtocol, "_set_clock", spy)

    async def go() -> bytes:
        config = Config(app=_app, http=edge.EdgeProtocol, loop="asyncio", lifespan="off", log_level="warning")
        config.load()
        protocol = edge.EdgeProtocol(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(request_bytes)
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.out

    out = asyncio.run(go())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok")
    assert (edge.BODY_IDLE in armed) is body_clock
    # and the clocks a kept-alive connection runs either way: the head's, none, keep-alive
    assert edge.FIRST_HEAD in armed and edge.NO_CLOCK in armed and edge.KEEPALIVE in armed
