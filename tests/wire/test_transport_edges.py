"""Upstream edge cases over real sockets, each once a bug found in review:
streaming without hold-back, stalled and early-answering upstreams, request
desync, close-delimited bodies, reloads under a stream, client aborts."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.support.gateway_proc import routes_yaml
from tests.support.raw_upstream import RawUpstream, read_head
from tests.support.waiting import until


@pytest.fixture
def upstream():
    made: list[RawUpstream] = []

    def make(handler) -> RawUpstream:
        u = RawUpstream(handler)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


def test_each_chunk_reaches_the_client_before_the_next_is_written(upstream, gateway_factory):
    release = threading.Event()

    def handler(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        release.wait(20)  # the second chunk only exists once the client has the first
        conn.sendall(b"6\r\nsecond\r\n0\r\n\r\n")

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url))
    with httpx.stream("GET", gw.url + "/x", timeout=10) as r:
        chunks = r.iter_raw()
        assert next(chunks) == b"first"  # a held-back chunk would time out here
        release.set()
        assert b"".join(chunks) == b"second"


@pytest.mark.parametrize(("framing", "body"), [
    (b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"Content-Length: 5\r\n", b"hello"),  # a handler that flushes its head, then writes
])
def test_the_answer_head_reaches_the_client_before_any_body_exists(upstream, gateway_factory, framing, body):
    # The edge holds a head back only when the forwarder already has the
    # whole body (BODY_FOLLOWS: one write for both): it must never wait for
    # a body that is not there yet (an event stream, a long poll).
    release = threading.Event()

    def handler(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n")
        release.wait(20)  # the body only exists once the client has the head
        conn.sendall(body)

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_head(s)  # a held-back head would time out here
        assert got.startswith(b"HTTP/1.1 200 ") and b"hello" not in got
        release.set()
        while b"hello" not in got or (b"chunked" in framing and not got.endswith(b"0\r\n\r\n")):
            piece = s.recv(4096)
            assert piece, got
            got += piece
    assert got.endswith(b"\r\n\r\nhello") or got.endswith(b"5\r\nhello\r\n0\r\n\r\n")


def test_an_upstream_that_stops_reading_an_upload_gets_a_504_and_frees_the_pool(upstream, gateway_factory):
    def handler(conn, head):
        time.sleep(30)  # accepts, never reads the body, never answers

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url, read_timeout=1))
    body = b"x" * (32 * 1024 * 1024)
    r = httpx.post(gw.url + "/upload", content=body, timeout=30)
    assert r.status_code == 504
    assert r.json()["message"].startswith("Gateway timeout: the legacy Go backend did not answer in time.")
    health = gw.admin_get("/_gateway/health").json()["upstream"]
    assert health["open_connections"] == 0


def test_an_early_answer_to_an_upload_reaches_the_client(upstream, gateway_factory):
    def handler(conn, head):
        time.sleep(0.3)  # let the gateway fill its write buffer first, as Go's slow handlers do
        conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.5)

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url))
    r = httpx.post(gw.url + "/upload", content=b"x" * (32 * 1024 * 1024), timeout=30)
    assert r.status_code == 413 and r.content == b"too big\n"


def test_a_half_sent_body_never_leaks_into_the_next_request(upstream, gateway_factory):
    def handler(conn, head):
        # Answer before reading the body, keep the connection open and read on,
        # as servers that drain a rejected body do.
        while True:
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
                         if head.startswith(b"POST") else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            head = read_head(conn)
            if not head:
                return

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url))
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        assert c.post("/upload", content=b"GET /smuggled HTTP/1.1\r\n\r\n" * 200_000).status_code == 401
        assert c.get("/next").status_code == 200
    assert b"GET /next HTTP/1.1" in u.request_lines
    assert not any(b"smuggled" in line for line in u.request_lines)


def test_a_body_delimited_by_connection_close_arrives_whole(upstream, gateway_factory):
    def handler(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello, ")
        conn.sendall(b"close-delimited body")

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url))
    r = httpx.get(gw.url + "/x", timeout=10)
    assert r.status_code == 200 and r.text == "hello, close-delimited body"


def test_a_reload_that_changes_legacy_does_not_cut_a_stream_in_flight(upstream, gateway_factory):
    def handler(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(5):
            conn.sendall(b"8\r\nchunk %d\n\r\n" % i)
            time.sleep(0.6)
        conn.sendall(b"0\r\n\r\n")

    u = upstream(handler)
    gw = gateway_factory(routes_yaml(u.url, read_timeout=1))
    with httpx.stream("GET", gw.url + "/stream", timeout=20) as r:
        chunks = r.iter_raw()
        got = [next(chunks)]
        gw.apply_config(routes_yaml(u.url, read_timeout=1, extra_legacy="  pool_size: 64\n"))
        got += list(chunks)
    assert b"".join(got) == b"".join(b"chunk %d\n" % i for i in range(5))


def test_an_empty_post_is_cancelled_upstream_when_the_client_leaves(gateway, standin):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", gateway.port))
        s.sendall(b"GET /_standin/slow?ms=20000 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        deadline = time.monotonic() + 5
        while httpx.get(standin.url + "/_standin/stats").json()["active_requests"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        s.close()
    deadline = time.monotonic() + 10
    while httpx.get(standin.url + "/_standin/stats").json()["active_requests"] != 0:
        assert time.monotonic() < deadline, "abandoned requests still running on the Go side"
        time.sleep(0.05)


def test_override_headers_never_reach_go_even_with_the_feature_off(gateway):
    r = httpx.get(gateway.url + "/_standin/echo", headers={
        "X-Gateway-Backend": "go", "X-Gateway-Target": "go", "X-Gateway-Admin-Token": "s3cret"})
    names = [n.lower() for n, _ in r.json()["headers"]]
    assert not {"x-gateway-backend", "x-gateway-target", "x-gateway-admin-token"} & set(names)


def test_a_client_leaving_a_python_route_is_a_499_not_a_500(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /_standin/echo/mirror\n    to: python\n"))
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"POST /_standin/echo/mirror/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\npartial")
    time.sleep(0.3)
    s.close()
    record = until(lambda: next((r for r in gw.access_records() if r["path"] == "/_standin/echo/mirror/x"), None),
                   what="the access-log line")
    assert record["status"] == 499
    assert "Traceback" not in gw.output()
