"""The edge's request/response cycle (gateway/edge/cycle.py) writes what
uvicorn 0.54's writes, fails where it fails and leaves the same state, for
good heads and bad ones, HEAD, chunked and length-framed bodies."""
from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.context import BODY_FOLLOWS, CYCLE_KEY
from gateway.edge.cycle import EdgeCycle
from tests.support.fake_transport import FakeTransport as _Transport


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


def _cycle(transport: _Transport, method: str = "GET") -> EdgeCycle:
    return EdgeCycle(scope={"method": method, "http_version": "1.1", "type": "http"}, transport=transport,
                     flow=FlowControl(transport), logger=logging.getLogger("t"), access_logger=logging.getLogger("t"),
                     access_log=False, default_headers=[], message_event=asyncio.Event(),
                     expect_100_continue=False, keep_alive=True, on_response=lambda: None)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(("headers", "body"), [
    ([(b"content-length", b"5")], b"hello"),
    ([(b"content-type", b"text/plain")], b"hello"),  # chunked
    ([(b"content-length", b"100000")], b"x" * 100_000),  # beside the head, not copied into it
    ([(b"content-length", b"0")], b""),
])
def test_an_answer_whose_body_follows_at_once_is_one_write(method, headers, body):
    transport = _Transport()
    cycle = _cycle(transport, method)

    async def go() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": headers, BODY_FOLLOWS: True})
        await cycle.send({"type": "http.response.body", "body": body})

    asyncio.run(go())
    assert transport.writes == 1
    assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n") and cycle.response_complete
    assert transport.out.endswith(b"" if method == "HEAD" else body if headers[0][0] == b"content-length"
                                  else b"5\r\nhello\r\n0\r\n\r\n")
    # The same bytes as without the promise, in two writes (uvicorn's).
    plain = _Transport()
    cycle = _cycle(plain, method)

    async def without() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
        await cycle.send({"type": "http.response.body", "body": body})

    asyncio.run(without())
    assert plain.out == transport.out and plain.writes == (1 if method == "HEAD" else 2)


def test_a_head_without_the_promise_goes_out_before_its_body_exists():
    # Why not hold every head for the loop's next turn: a call_soon flush per
    # answer cost ~7 us of user CPU a request, against ~5 us of system CPU
    # for the write it saved (the ping app on the edge, 12 interleaved rounds
    # with each variant, utime and stime from /proc, 2026-12-03).
    transport = _Transport()
    cycle = _cycle(transport)
    seen: list[bytes] = []

    async def go() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        seen.append(transport.out)
        await cycle.send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(go())
    assert seen[0].startswith(b"HTTP/1.1 200 OK\r\n") and seen[0].endswith(b"\r\n\r\n")
    assert transport.out == seen[0] + b"ok" and transport.writes == 2


def test_a_held_head_goes_out_when_the_app_fails_before_its_body():
    transport = _Transport()
    cycle = _cycle(transport)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")],
                    BODY_FOLLOWS: True})
        raise RuntimeError("broken before the body")

    asyncio.run(cycle.run_asgi(app))
    assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n") and transport.out.endswith(b"\r\n\r\n")
    assert transport.closed  # as uvicorn: a started answer that can't finish ends the connection


def test_a_served_cycle_is_freed_without_the_cyclic_gc():
    # The scope leads back to its cycle (for the forwarder's client watch)
    # while the app runs; after, nothing may: a reference cycle per request
    # would be left for the cyclic GC.
    transport = _Transport()
    cycle = _cycle(transport)
    cycle.scope["extensions"] = {CYCLE_KEY: cycle}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    gc.collect()
    gc.disable()
    try:
        asyncio.run(cycle.run_asgi(app))
        freed = weakref.ref(cycle)
        del cycle
        assert freed() is None
    finally:
        gc.enable()
    assert transport.out.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_held_head_goes_out_on_a_connection_closing_with_answers_in_its_buffer(loop_kind):
    # close() with an earlier answer still buffered (a client that half-closed
    # after pipelining): the transport sends on and takes what is written until
    # the connection is gone, so the next answer must arrive whole, head first.
    import socket

    import uvloop

    class _Quiet(asyncio.Protocol):
        pass

    earlier = 4_000_000

    async def go() -> bytes:
        loop = asyncio.get_running_loop()
        ours, client = socket.socketpair()
        client.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(_Quiet, ours)
        transport.write(b"Z" * earlier)  # not read yet
        assert transport.get_write_buffer_size() > 0
        transport.close()
        cycle = EdgeCycle(scope={"method": "GET", "http_version": "1.1", "type": "http"}, transport=transport,
                          flow=FlowControl(transport), logger=logging.getLogger("t"),
                          access_logger=logging.getLogger("t"), access_log=False, default_headers=[],
                          message_event=asyncio.Event(), expect_100_continue=False, keep_alive=True,
                          on_response=lambda: None)
        await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")],
                          BODY_FOLLOWS: True})
        await asyncio.sleep(0.01)  # the body's first piece comes a little later
        await cycle.send({"type": "http.response.body", "body": b"hello"})
        got = bytearray()
        while True:
            try:
                data = await loop.sock_recv(client, 1 << 20)
            except ConnectionError:
                break
            if not data:
                break
            got += data
        client.close()
        return bytes(got[earlier:])

    runner = asyncio.run if loop_kind == "asyncio" else uvloop.run
    answer = runner(go())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhello")
