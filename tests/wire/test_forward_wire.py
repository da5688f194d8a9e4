"""The forwarder over real loopback sockets: gateway process ⇄ Go stand-in.

Everything here is observed on the wire, the way a client or the Go backend
would see it: raw request heads, repeated headers, streaming, resets,
disconnects and the upstream connection pool.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import socket
import time

import httpx
import pytest

from tests.support.gateway_proc import routes_yaml
from tests.support.waiting import until


def raw_request(port: int, head: bytes, body: bytes = b"", read: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                chunks.append(b"<RESET>")
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def echo(resp: bytes) -> dict:
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def test_request_line_and_headers_reach_go_byte_for_byte(gateway, standin):
    target = b"/_standin/echo/a%2Fb/%7e/caf%C3%A9?x=1&x=2&y=%20&z"
    head = (b"GET " + target + b" HTTP/1.1\r\nHost: api.example.com\r\nX-Zeta: 1\r\nAccept: text/html\r\n"
            b"X-Alpha: a\r\nX-Alpha: b\r\nCookie: session=abc; csrf=x\r\nConnection: close\r\n\r\n")
    got = echo(raw_request(gateway.port, head))
    assert got["uri"] == target.decode()
    assert got["host"] == "api.example.com"
    names = [n.lower() for n, _ in got["headers"]]
    # Order kept; repeated headers kept; the client library injected nothing.
    # The only additions are honest ones: tracing ids and X-Forwarded-*.
    assert names == ["host", "x-zeta", "accept", "x-alpha", "x-alpha", "cookie",
                     "x-request-id", "traceparent", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
    values = dict((n.lower(), v) for n, v in got["headers"])
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert values["x-forwarded-proto"] == "http"
    assert values["x-forwarded-host"] == "api.example.com"
    assert values["cookie"] == "session=abc; csrf=x"


def test_spoofed_forwarded_headers_from_an_untrusted_client_are_replaced(gateway):
    head = (b"GET /_standin/echo HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
    values = [(n.lower(), v) for n, v in echo(raw_request(gateway.port, head))["headers"]]
    assert ("x-forwarded-for", "127.0.0.1") in values and ("x-forwarded-proto", "http") in values
    assert "6.6.6.6" not in json.dumps(values)


def test_upload_streams_with_its_content_length(gateway):
    body = bytes(range(256)) * 4096 * 8  # 8 MiB
    r = httpx.post(gateway.url + "/_standin/echo", content=body, timeout=30)
    got = r.json()
    assert got["body_len"] == len(body) and got["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert got["content_length"] == len(body) and got["transfer_encoding"] == []


def test_chunked_upload_stays_chunked(gateway):
    parts = [b"a" * 1000, b"b" * 5000, b"c"]
    r = httpx.post(gateway.url + "/_standin/echo", content=iter(parts), timeout=30)
    got = r.json()
    assert got["body_len"] == 6001 and got["transfer_encoding"] == ["chunked"] and got["content_length"] == -1


def test_repeated_set_cookie_arrive_separately_and_byte_identical(gateway, standin):
    head = b"GET /_standin/cookies HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    direct = raw_request(standin.port, head).split(b"\r\n")
    via = raw_request(gateway.port, head).split(b"\r\n")
    # Values byte-identical and separate; uvicorn writes names lower-case
    # (HTTP field names are case-insensitive).
    cookies = lambda lines: [ln.split(b":", 1)[1] for ln in lines if ln.lower().startswith(b"set-cookie:")]
    assert len(cookies(direct)) == 3
    assert cookies(via) == cookies(direct)


def test_compressed_body_passes_undecoded(gateway, standin):
    def fetch(base):
        with httpx.stream("GET", base + "/_standin/gzip", headers={"Accept-Encoding": "gzip"}) as r:
            return r.headers, b"".join(r.iter_raw())

    direct_headers, direct = fetch(standin.url)
    via_headers, via = fetch(gateway.url)
    assert via_headers["content-encoding"] == "gzip"
    assert via_headers["content-length"] == direct_headers["content-length"]
    assert via == direct and gzip.decompress(via).startswith(b"hello gzip")


def test_hop_by_hop_response_headers_are_removed(gateway):
    resp = raw_request(gateway.port, b"GET /_standin/headers-out HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head = resp.split(b"\r\n\r\n")[0].lower()
    assert b"x-keep: yes" in head
    assert b"x-hop" not in head and b"keep-alive" not in head


def test_response_streams_chunk_by_chunk(gateway):
    # The first chunk reaches the client while the upstream is still writing.
    with httpx.stream("GET", gateway.url + "/_standin/stream?chunks=4&interval_ms=400", timeout=30) as r:
        it = r.iter_raw()
        first = next(it)
        assert first.startswith(b"chunk 0")
        rest = b"".join(it)
    assert (first + rest).count(b"chunk ") == 4


def test_redirects_head_204_304(gateway):
    with httpx.Client() as c:
        r = c.get(gateway.url + "/_standin/redirect")
        assert r.status_code == 302 and r.headers["location"] == "/ping"
        assert c.get(gateway.url + "/_standin/status/204").status_code == 204
        r = c.get(gateway.url + "/_standin/status/304")
        assert r.status_code == 304 and r.content == b""
    resp = raw_request(gateway.port, b"HEAD /_standin/echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head.lower() and body == b""


def test_keep_alive_connection_survives_head_and_many_requests(gateway):
    with httpx.Client(base_url=gateway.url) as c:
        for _ in range(3):
            assert c.head("/_standin/echo").status_code == 200
            assert c.get("/_standin/small").content == b"0123456789" * 20


def test_upstream_reset_mid_body_aborts_the_client_connection(gateway):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream("GET", gateway.url + "/_standin/reset?after=1000", timeout=10) as r:
            assert r.status_code == 200
            r.read()


def test_legacy_down_is_502_naming_the_request_not_the_backend(gateway_factory, dead_url):
    dead = dead_url
    gw = gateway_factory(routes_yaml(dead))
    r = httpx.get(gw.url + "/users", headers={"X-Request-Id": "req-down-1"})
    assert r.status_code == 502
    assert r.json() == {"message": "Bad gateway: the legacy Go backend is unreachable. "
                                   "Request id req-down-1 — the gateway's log has the details."}
    assert dead not in r.text and "127.0.0.1" not in r.text
    # Ops find the address, the exception and what to check by the request id.
    until(lambda: any("req-down-1" in line and dead in line and "legacy.url" in line
                      for line in gw.lines()), what="the 502's log line")
    assert httpx.get(gw.url + "/_gateway/ready").status_code == 503


def test_slow_legacy_is_504(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, read_timeout=0.3))
    r = httpx.get(gw.url + "/_standin/slow?ms=3000", timeout=10)
    assert r.status_code == 504
    request_id = r.headers["x-request-id"]
    assert r.json() == {"message": "Gateway timeout: the legacy Go backend did not answer in time. "
                                   f"Request id {request_id} — the gateway's log has the details."}
    until(lambda: any(request_id in line and "read_timeout" in line and standin.url in line
                      for line in gw.lines()), what="the 504's log line")


def test_debug_errors_show_the_detail_in_the_body(gateway_factory, dead_url):
    dead = dead_url
    gw = gateway_factory(routes_yaml(dead), env={"GATEWAY_DEBUG_ERRORS": "1"})
    r = httpx.get(gw.url + "/users")
    assert r.status_code == 502
    message = r.json()["message"]
    assert message.startswith("Bad gateway: the legacy Go backend is unreachable. Request id ")
    assert dead in message and "legacy.url" in message


def test_large_download_streams_without_buffering(gateway_factory, standin):
    gateway = gateway_factory(routes_yaml(standin.url))
    size = 256 * 1024 * 1024
    before = gateway.rss_kib()
    got = 0
    with httpx.stream("GET", gateway.url + f"/_standin/download?size={size}", timeout=60) as r:
        assert int(r.headers["content-length"]) == size
        for chunk in r.iter_raw(1 << 20):
            got += len(chunk)
    assert got == size
    grown_mib = (gateway.rss_kib("VmHWM") - before) / 1024
    assert grown_mib < 64, f"gateway peak RSS grew by {grown_mib:.0f} MiB for a 256 MiB download"


def test_large_upload_streams_without_buffering(gateway_factory, standin):
    gateway = gateway_factory(routes_yaml(standin.url))
    size, chunk = 256 * 1024 * 1024, b"u" * (1 << 20)
    before = gateway.rss_kib()
    digest = hashlib.sha256()

    def body():
        for _ in range(size // len(chunk)):
            digest.update(chunk)
            yield chunk

    r = httpx.post(gateway.url + "/_standin/echo", content=body(), timeout=120,
                   headers={"Content-Length": str(size)})
    got = r.json()
    assert got["body_len"] == size and got["body_sha256"] == digest.hexdigest()
    assert got["content_length"] == size
    grown_mib = (gateway.rss_kib("VmHWM") - before) / 1024
    assert grown_mib < 64, f"gateway peak RSS grew by {grown_mib:.0f} MiB for a 256 MiB upload"


def _stats(standin) -> dict:
    return httpx.get(standin.url + "/_standin/stats").json()


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_client_going_away_cancels_upstream_and_pool_does_not_leak(gateway, standin):
    head = b"GET /_standin/slow?ms=30000 HTTP/1.1\r\nHost: h\r\n\r\n"
    socks = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", gateway.port))
        s.sendall(head)
        socks.append(s)
        if len(socks) >= 50:  # keep at most 50 client sockets open at once
            # Give the gateway time to open the upstream request, then vanish.
            _wait(lambda: _stats(standin)["active_requests"] >= 1, 5)
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            socks = []
    for s in socks:
        s.close()
    # Every abandoned upstream request is cancelled: nothing left in flight
    # on the Go side, and the gateway's pool holds no busy connections.
    assert _wait(lambda: _stats(standin)["active_requests"] == 0), _stats(standin)
    health = gateway.admin_get("/_gateway/health").json()["upstream"]
    assert health["open_connections"] == health["idle_connections"], health
    assert _wait(lambda: _stats(standin)["open_connections"] <= 60), _stats(standin)
    # And it still serves.
    assert httpx.get(gateway.url + "/_standin/small").status_code == 200


@pytest.mark.parametrize("path", [
    b"/ping/../_standin/echo", b"/ping/%2e%2e/_standin/echo", b"/ping//..//_standin/echo",
    b"/ping/..%5c_standin/echo", b"/ping/%2E%2E%2F_standin/echo/..",
])
def test_path_tricks_cannot_reach_another_route(gateway, path):
    resp = raw_request(gateway.port, b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400"), resp[:200]
    assert b"Bad request path" in resp


def test_encoded_slash_stays_inside_its_segment(gateway_factory, standin):
    # /ping is Python; %2F does not turn /ping%2F.. into a climb to another prefix.
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /ping\n    to: python\n"))
    resp = raw_request(gw.port, b"GET /ping%2F..%2F_standin%2Fecho HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b'"method"' not in resp  # the Go echo probe never saw it


def test_admin_prefix_is_never_forwarded(gateway):
    r = httpx.get(gateway.url + "/_gateway/nope")
    assert r.status_code == 404
    assert gateway.admin_get("/_gateway/routes").json()["default"] == "go"
