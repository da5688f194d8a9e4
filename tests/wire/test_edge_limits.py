"""Client-side limits of the edge, over raw sockets against a real gateway.

Each limit is hit and must be answered on the wire: the status, a short JSON
body, ``Connection: close`` and a closed connection — and nothing may reach the
upstream (a recording upstream counts every connection the gateway makes).
After each hostile case the gateway's descriptors and memory are back near
where they were. Timeouts are set short here (flags), the defaults are
asserted in tests/unit/test_edge_limits.py.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.raw_upstream import RecordingUpstream
from tests.support.rawhttp import (
    assert_back_near,
    closed_by_peer,
    connect,
    exchange,
    footprint,
    read_one,
)

HEAD_TIMEOUT, BODY_IDLE, KEEPALIVE = 1.5, 1.5, 1.0
FLAGS = ["--head-timeout", str(HEAD_TIMEOUT), "--body-idle-timeout", str(BODY_IDLE),
         "--keepalive-timeout", str(KEEPALIVE)]


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: RecordingUpstream) -> Iterator[GatewayProc]:
    proc = start_gateway(routes_yaml(recorder.url), tmp_path_factory.mktemp("edge"), args=FLAGS)
    yield proc
    proc.stop()


@pytest.fixture
def baseline(gw: GatewayProc) -> Iterator[None]:
    """Descriptors and RSS before a hostile case; both back near them after."""
    # Warm up first, so the pool's connection and lazy imports are in the baseline.
    assert exchange(gw.port, b"GET /warm HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").status == 200
    before = footprint(gw)
    yield
    assert_back_near(gw, before)


def _refused(resp, status: int, words: str) -> None:
    assert resp.status == status, resp.head
    assert resp.header(b"connection") == b"close"
    assert resp.header(b"content-type") == b"application/json"
    assert words in json.loads(resp.body)["message"]
    assert resp.closed


def _forwarded(recorder: RecordingUpstream) -> int:
    return len(recorder.seen)


@pytest.mark.parametrize("case, status, words", [
    ("request_line", 414, "request line is over 8192 bytes"),
    ("header_line", 431, "a header field is over 8192 bytes"),
    ("header_count", 431, "more than 100 header fields"),
    ("head_size", 431, "the request head is over 32768 bytes"),
])
def test_each_head_limit_is_answered_and_nothing_goes_upstream(gw, recorder, baseline, case, status, words):
    heads = {
        "request_line": b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        "header_line": b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 8200 + b"\r\n\r\n",
        "header_count": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n",
        "head_size": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(5))
                     + b"\r\n",
    }
    before = _forwarded(recorder)
    _refused(exchange(gw.port, heads[case]), status, words)
    assert _forwarded(recorder) == before


def test_heads_just_within_the_limits_are_served(gw, recorder):
    line = b"GET /" + b"a" * (8192 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 8192
    field = b"X-Big: " + b"v" * (8192 - 7)
    head = line + b"\r\n" + field + b"\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(98)) + b"Host: h\r\n\r\n"
    assert len(head) <= 32768
    with connect(gw.port) as s:
        s.sendall(head)
        assert read_one(s).status == 200
    assert recorder.seen[-1] == line


def test_a_head_that_never_ends_is_cut_at_the_limit(gw, recorder, baseline):
    # The answer comes as soon as the field passes 8 KiB, not when the sender stops.
    before = _forwarded(recorder)
    sent, answer = 0, b""
    with connect(gw.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Endless: ")
        s.settimeout(0.05)
        while not answer and sent < 1024 * 1024:
            s.sendall(b"v" * 4096)
            sent += 4096
            try:
                answer = s.recv(65536)
            except TimeoutError:
                pass
        # Refused connections are drained briefly (so the client reads the
        # answer, not a reset), then closed.
        assert closed_by_peer(s, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert sent <= 8192 + 64 * 1024, f"answered only after {sent} bytes"
    assert _forwarded(recorder) == before


def test_a_hundred_thousand_headers_are_cut_at_the_hundred_and_first(gw, recorder, baseline):
    before = _forwarded(recorder)
    with connect(gw.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
        try:
            for i in range(0, 100_000, 1000):
                s.sendall(b"".join(b"X-%d: 1\r\n" % j for j in range(i, i + 1000)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"more than 100 header fields" in answer
    assert _forwarded(recorder) == before


@pytest.mark.deadline
def test_silent_and_half_sent_heads_get_408_after_the_head_timeout(gw, recorder, baseline):
    before = _forwarded(recorder)
    silent, half = connect(gw.port), connect(gw.port)
    try:
        half.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        started = time.monotonic()
        for s in (silent, half):
            s.settimeout(HEAD_TIMEOUT + 5)
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            assert b"connection: close" in answer and b"no complete request head within 1.5 s" in answer
            assert closed_by_peer(s, 3)
        assert time.monotonic() - started < HEAD_TIMEOUT + 3
    finally:
        silent.close()
        half.close()
    assert _forwarded(recorder) == before


@pytest.mark.deadline
def test_a_trickled_head_gets_no_more_time_than_the_head_timeout(gw):
    # One byte every 0.2 s resets nothing: the head must be whole in time.
    with connect(gw.port) as s:
        started = time.monotonic()
        answer = b""
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"x" * 100:
                s.sendall(bytes([byte]))
                s.settimeout(0.2)
                try:
                    answer += s.recv(65536)
                    break
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert time.monotonic() - started < HEAD_TIMEOUT + 1.5


@pytest.mark.deadline
@pytest.mark.parametrize("after_answer", [b"", b"\r\n", b"G"], ids=["idle", "stray-crlf", "first-byte"])
def test_keep_alive_and_the_next_head_are_bounded(gw, after_answer):
    # uvicorn cancels its keep-alive timer on any byte and re-arms it only
    # after a response: a stray CRLF or one byte of a next request kept its
    # connections open for ever. Here: keep-alive, then the head timeout.
    with connect(gw.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_one(s).status == 200
        s.sendall(after_answer)
        limit = KEEPALIVE if not after_answer else HEAD_TIMEOUT
        started = time.monotonic()
        assert closed_by_peer(s, limit + 3)
        assert limit - 0.2 <= time.monotonic() - started <= limit + 1.5


def test_idle_keep_alive_connections_all_close_under_load(gw, baseline):
    # 500 connections, one request each, then silence; every one is closed
    # after the keep-alive timeout, however busy the gateway was.
    socks = [connect(gw.port) for _ in range(500)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        for s in socks:
            assert read_one(s).status == 200
        deadline = time.monotonic() + KEEPALIVE + 5
        still_open = [s for s in socks if not closed_by_peer(s, max(0.01, deadline - time.monotonic()))]
        assert not still_open, f"{len(still_open)} of 500 idle keep-alive connections still open"
    finally:
        for s in socks:
            s.close()


def test_rss_stays_flat_while_a_head_is_refused_many_times(gw, baseline):
    # 200 heads at the size limit, each refused: nothing is kept per refusal.
    head = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(5)) + b"\r\n"
    for _ in range(200):
        assert exchange(gw.port, head).status == 431


def test_routes_yaml_limits_apply_to_new_connections_and_follow_a_reload(tmp_path, recorder):
    """`limits:` in routes.yaml beats the flags for what it sets, and an edit
    applies to the connections opened after it."""
    line = b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    gw = start_gateway(routes_yaml(recorder.url, limits="  request_line: 2048\n"), tmp_path,
                       args=["--request-line", "65536"])
    try:
        _refused(exchange(gw.port, line), 414, "request line is over 2048 bytes")
        gw.apply_config(routes_yaml(recorder.url))  # no limits: block: the flag rules again
        assert exchange(gw.port, line).status == 200
    finally:
        gw.stop()
