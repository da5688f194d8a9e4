"""Connection floods at the edge: slowloris, the connection limit, descriptor headroom.

Loads are bounded (a few hundred loopback connections, seconds). Latency is
judged against the median measured in the same test before the flood, never
against an absolute wall-clock figure.
"""
from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import pytest

from tests.support.gateway_proc import routes_yaml, start_gateway
from tests.support.raw_upstream import RecordingUpstream
from tests.support.rawhttp import (
    closed_by_peer,
    connect,
    exchange,
    fd_count,
    read_until_close,
)
from tests.support.waiting import until

HEAD_TIMEOUT = 2.0
SLOWLORIS = 300
GET = b"GET /legit HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
HEALTH = b"GET /_gateway/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    u = RecordingUpstream(slow_seconds=8.0)  # /slow keeps a slot busy well past the checks
    yield u
    u.close()


def timed(port: int, request: bytes = GET) -> tuple[int, float]:
    started = time.monotonic()
    resp = exchange(port, request)
    return resp.status, time.monotonic() - started


def usual_latency(port: int, n: int = 20) -> float:
    samples = []
    for _ in range(n):
        status, secs = timed(port)
        assert status == 200
        samples.append(secs)
    return statistics.median(samples)


def open_slowloris(port: int, n: int) -> list[socket.socket]:
    """``n`` connections, each with half a request head."""
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(b"GET /slowloris HTTP/1.1\r\nHost: h\r\nX-a: ")
        socks.append(s)
    return socks


def trickle(socks: list[socket.socket]) -> None:
    """One more byte on each connection still open (what slowloris does)."""
    for s in socks:
        try:
            s.sendall(b"a")
        except OSError:
            pass


@pytest.mark.latency
def test_slowloris_leaves_legitimate_requests_their_usual_latency(tmp_path, upstream):
    gw = start_gateway(routes_yaml(upstream.url), tmp_path, args=["--head-timeout", str(HEAD_TIMEOUT)])
    try:
        usual = usual_latency(gw.port)
        fds, rss = fd_count(gw.proc.pid), gw.rss_kib()
        flood = open_slowloris(gw.port, SLOWLORIS)
        try:
            latencies = []
            for _ in range(20):
                trickle(flood)
                status, secs = timed(gw.port)
                assert status == 200
                latencies.append(secs)
            bound = 10 * usual + 0.2
            assert max(latencies) <= bound, f"legit requests took up to {max(latencies):.3f} s during the " \
                                             f"flood (usual {usual:.4f} s, bound {bound:.3f} s)"
            # Every slowloris connection gets its 408 and is closed by the
            # gateway, however many bytes it trickled.
            deadline = time.monotonic() + HEAD_TIMEOUT + 5
            answers = [read_until_close(s, max(0.1, deadline - time.monotonic())) for s in flood]
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), \
                f"{sum(not a.startswith(b'HTTP/1.1 408 ') for a in answers)} slowloris connections not answered 408"
        finally:
            for s in flood:
                s.close()
        assert not any(b"/slowloris" in line for line in upstream.seen)
        pool = lambda: gw.admin_get("/_gateway/health").json()["upstream"]["open_connections"]
        until(lambda: fd_count(gw.proc.pid) - pool() <= fds + 2, 10, what="descriptors back to baseline")
        assert (gw.rss_kib() - rss) / 1024 < 16
    finally:
        gw.stop()


def test_at_the_connection_limit_slowloris_gives_way_and_busy_connections_mean_503(tmp_path, upstream):
    limit = 40
    gw = start_gateway(routes_yaml(upstream.url), tmp_path,
                       args=["--max-connections", str(limit), "--head-timeout", "30"])
    try:
        flood = open_slowloris(gw.port, limit)
        try:
            time.sleep(1.2)  # older than EVICT_AFTER: they may be pushed out now
            # Health and real clients get in: each pushes out the oldest half-sent head.
            assert exchange(gw.port, HEALTH).status == 200
            for _ in range(5):
                assert timed(gw.port)[0] == 200
            # One slot was needed (each client left again): the oldest gave way
            # with a 503; the next oldest still waits.
            oldest = read_until_close(flood[0], 2)
            assert oldest.startswith(b"HTTP/1.1 503 ") and b"connection limit" in oldest, oldest
            assert not closed_by_peer(flood[1], 0.3)
        finally:
            for s in flood:
                s.close()
        # Every slot busy with a request in flight: nobody to push out, 503.
        busy = []
        try:
            for _ in range(limit):
                s = connect(gw.port)
                s.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
                busy.append(s)
            until(lambda: sum(b"/slow" in line for line in upstream.seen) >= limit, 10,
                  what="every slot busy upstream")
            resp = exchange(gw.port, HEALTH)
            assert resp.status == 503 and resp.closed
            assert resp.header(b"connection") == b"close"
            assert b"The gateway is at its connection limit" in resp.body
        finally:
            for s in busy:
                s.close()
        until(lambda: exchange(gw.port, HEALTH).status == 200, 10, what="health once the slots free up")
    finally:
        gw.stop()


def test_under_a_low_descriptor_limit_a_flood_cannot_take_the_last_descriptor(tmp_path, upstream):
    # The case: with RLIMIT_NOFILE=1024 slowloris used every
    # descriptor. Here 400 with a 64-connection pool: the worker keeps
    # 64 + 128 descriptors back and admits 208 clients; a flood of 300 can't
    # starve health checks, real clients or the upstream pool.
    config = routes_yaml(upstream.url, extra_legacy="  pool_size: 64\n")
    gw = start_gateway(config, tmp_path, nofile=400, args=["--head-timeout", "30"])
    try:
        flood = []
        try:
            for _ in range(SLOWLORIS):
                try:
                    flood += open_slowloris(gw.port, 1)
                except OSError:
                    break
            time.sleep(1.2)
            assert exchange(gw.port, HEALTH).status == 200
            for _ in range(10):
                assert timed(gw.port)[0] == 200
            assert fd_count(gw.proc.pid) < 400
        finally:
            for s in flood:
                s.close()
        log = gw.output()
        assert "client connections per worker capped at 208" in log
        assert "Too many open files" not in log
    finally:
        gw.stop()


def test_a_keep_alive_client_idle_at_the_limit_gives_way_first(tmp_path, upstream):
    gw = start_gateway(routes_yaml(upstream.url), tmp_path, args=["--max-connections", "2"])
    try:
        idle = connect(gw.port)
        idle.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        half = connect(gw.port)
        half.sendall(b"GET /half HTTP/1.1\r\n")
        # A third client: the idle keep-alive connection is closed (quietly,
        # as its timeout would), the half-sent head is younger than a second.
        assert timed(gw.port)[0] == 200
        assert closed_by_peer(idle, 2)
        half.sendall(b"Host: h\r\nConnection: close\r\n\r\n")
        assert read_until_close(half).startswith(b"HTTP/1.1 200")
    finally:
        gw.stop()
