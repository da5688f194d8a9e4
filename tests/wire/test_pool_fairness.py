"""Fair use of the upstream pool, on the wire, as the issue saw it (scaled to a
pool of 32 on loopback): more slow uploads than the pool has connections, each
trickling its body from a raw socket, while another client's plain GETs go on.

Requests with a body may hold at most ``body_pool_share`` (0.5) of the pool, so
the GETs are answered at their usual latency; the uploads past that budget get
the pool-exhausted answer after the acquire deadline; and once the uploads
stall, ``body_idle_timeout`` frees their connections (408 to each client) —
unless the upstream had answered already: then that answer is what the client gets."""
from __future__ import annotations

import socket
import statistics
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.support.gateway_proc import routes_yaml
from tests.support.raw_upstream import RawUpstream
from tests.support.waiting import until

POOL = 32
UPLOADS = 40  # more than the whole pool: without a budget they'd hold all of it
BODY_SHARE = 0.5
BODY_IDLE = 1.0  # seconds (the default is 30)
ACQUIRE_DEADLINE = 1.0  # legacy.connect_timeout, seconds: the uploads past the budget wait this long


def _stats(standin) -> dict:
    return httpx.get(standin.url + "/_standin/stats", timeout=5).json()


def _busy(gw) -> int:
    pool = gw.admin_get("/_gateway/health").json()["upstream"]
    return pool["open_connections"] - pool["idle_connections"]


def _latencies(client: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get("/_standin/small")
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return out


def _status(sock: socket.socket) -> int:
    """The status of the answer waiting on ``sock`` (read to the end of its head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.latency
def test_slow_uploads_cannot_take_the_pool_from_a_normal_get(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, extra_legacy=f"  pool_size: {POOL}\n  body_pool_share: {BODY_SHARE}\n",
                                     limits=f"  body_idle_timeout: {BODY_IDLE}\n", connect_timeout=ACQUIRE_DEADLINE))
    budget = int(POOL * BODY_SHARE)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        _latencies(client, 10)  # warm up
        before = _latencies(client, 30)
        fds, rss = gw.open_fds(), gw.rss_kib()

        uploads = []
        for _ in range(UPLOADS):
            s = socket.create_connection(("127.0.0.1", gw.port))
            s.sendall(b"POST /_standin/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Length: 1000000\r\n\r\nx")
            uploads.append(s)
        stop = threading.Event()

        def trickle() -> None:  # one byte per upload every 0.2 s: never idle for BODY_IDLE
            while not stop.wait(0.2):
                for s in uploads:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            # The uploads hold their whole budget of pooled connections, Go
            # reading each body as it trickles in...
            until(lambda: _stats(standin)["active_requests"] >= budget, what=f"{budget} uploads upstream")
            assert _busy(gw) == budget
            # ...and another client's GETs are answered at their usual latency.
            during = _latencies(client, 30)
            assert statistics.median(during) < 5 * statistics.median(before), (before, during)
            # The uploads past the budget get the pool-exhausted answer after
            # the acquire deadline (legacy.connect_timeout), still trickling.
            exhausted = f"busy (legacy.body_pool_share {BODY_SHARE:g} of legacy.pool_size {POOL}"
            until(lambda: gw.output().count(exhausted) == UPLOADS - budget, what="the uploads past the budget answered")
            assert _busy(gw) == budget and _stats(standin)["active_requests"] == budget
            assert statistics.median(_latencies(client, 30)) < 5 * statistics.median(before)
        finally:
            stop.set()
            trickler.join()

    # The uploads stall now: each pooled one is cancelled after BODY_IDLE,
    # its upstream connection closed (Go sees its request end)...
    until(lambda: _busy(gw) == 0, what="the uploads' pooled connections freed")
    until(lambda: _stats(standin)["active_requests"] == 0, what="the uploads gone on the Go side")
    statuses = Counter()
    for s in uploads:
        s.settimeout(10)
        statuses[_status(s)] += 1
        s.close()
    # ...and its client told 408; the others had their 504.
    assert statuses == {408: budget, 504: UPLOADS - budget}, statuses
    # Whichever timer saw the stall first wrote why: the forwarder's (its pooled
    # connection) or the edge's (the client connection), both at body_idle_timeout;
    # when they fire in the same moment, both do. Counted per request id: each
    # answered upload has its why. (The log is written in batches, a moment
    # after the answers. Read as decoded records: the JSON lines escape the
    # arrow as \u2192, so "→ 408" is not in the raw file.)
    def why_408() -> set[str]:
        forwarder = {m.split("(request id ", 1)[1].split(")", 1)[0]
                     for m in gw.messages() if "→ 408 (request id" in m}
        edge = {r["request_id"] for r in gw.access_records()
                if str(r.get("edge", "")).startswith("request body idle")}
        return forwarder | edge

    until(lambda: len(why_408()) >= budget, 5, what=f"{budget} requests with a log line saying why a 408")
    assert len(why_408()) == budget
    until(lambda: gw.open_fds() <= fds, what=f"descriptors back to {fds} (now {gw.open_fds()})")
    assert gw.rss_kib() - rss < 16 * 1024
    assert httpx.get(gw.url + "/_standin/small", timeout=10).status_code == 200


def test_a_stalled_body_after_the_upstream_answered_gets_that_answer_not_a_408(gateway_factory):
    # A handler that ran without reading the body (as Go's DELETE handlers do):
    # the client stalls mid-body, but must hear how its request ended.
    def handler(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ndeleted")
        conn.recv(1)  # until the gateway hangs up

    u = RawUpstream(handler)
    try:
        gw = gateway_factory(routes_yaml(u.url, limits="  body_idle_timeout: 0.5\n"))
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            s.sendall(b"DELETE /api_keys/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n{\"partial\":")
            assert _status(s) == 200
        until(lambda: _busy(gw) == 0 and gw.admin_get("/_gateway/health").json()["upstream"]
              ["open_connections"] == 0, what="the half-written upstream connection closed, not pooled")
        assert not any("→ 408" in m for m in gw.messages())
    finally:
        u.close()
