"""The edge's request/response cycle (gateway/edge/cycle.py) writes what
uvicorn 0.54's writes, fails where it fails and leaves the same state, for
good heads and bad ones, HEAD, chunked and length-framed bodies."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.edge.cycle import EdgeCycle


class _Transport:
    def __init__(self) -> None:
        self.out = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _run(cls: type, method: str, headers: list[tuple[bytes, bytes]], bodies: list[tuple[bytes, bool]],
         default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> tuple[Any, ...]:
    transport = _Transport()
    completed: list[bool] = []
    cycle = cls(scope={"method": method, "http_version": "1.1", "type": "http"}, transport=transport,
                flow=FlowControl(transport), logger=logging.getLogger("t"), access_logger=logging.getLogger("t"),
                access_log=False, default_headers=list(default_headers), message_event=asyncio.Event(),
                expect_100_continue=False, keep_alive=keep_alive, on_response=lambda: completed.append(True))

    async def go() -> str | None:
        try:
            await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
            for body, more in bodies:
                await cycle.send({"type": "http.response.body", "body": body, "more_body": more})
        except Exception as exc:  # what and where, compared below
            return f"{type(exc).__name__}: {exc}"
        return None

    error = asyncio.run(go())
    return (error, transport.out, transport.closed, completed, cycle.expected_content_length,
            cycle.chunked_encoding, cycle.keep_alive, cycle.response_complete)


HEADS = [
    [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")],
    [(b"content-type", b"text/plain")],  # no length: chunked
    [(b"Transfer-Encoding", b"chunked"), (b"X-A", b"1")],
    [(b"Connection", b"keep-alive, Close"), (b"Content-Length", b"3")],
    [(b"X-A", b"1\r\nX-Injected: 1"), (b"Content-Length", b"3")],  # a bad value
    [(b"Content-Length", b"3"), (b"X Bad", b"1")],  # a bad name after the length
    [(b"X-A", b"bad\x01"), (b"(", b"v")],  # a bad value before a bad name: uvicorn blames the value
    [(b"Content-Length", b"3\n"), (b"X-A", b"1")],  # a length with a bad byte
    [(b"Content-Length", b"abc")],  # a length that is no number
    [(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
]
BODIES = [[(b"abc", False)], [(b"ab", True), (b"c", False)], [(b"", True), (b"abc", True), (b"", False)],
          [(b"abcd", False)]]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("bodies", BODIES)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_the_edge_cycle_answers_as_uvicorns(head, bodies, method, keep_alive):
    defaults = [(b"server", b"edge")] if keep_alive else []
    assert (_run(EdgeCycle, method, head, bodies, defaults, keep_alive)
            == _run(RequestResponseCycle, method, head, bodies, defaults, keep_alive))
