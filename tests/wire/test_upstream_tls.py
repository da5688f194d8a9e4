"""An ``https://`` legacy URL, over real sockets: the gateway's own transport
speaks TLS to it, so the pool, keep-alive and the upstream limits hold there
as over plain HTTP, and a certificate it can't verify is a 502 saying why."""
from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.raw_upstream import RawUpstream, read_head
from tests.support.waiting import until


def answer(conn: socket.socket, head: bytes) -> None:
    """Keep-alive answers until the gateway closes: ``/big-header`` sends a
    1 MiB response head, anything else ``200 ok``."""
    while head:
        if b" /big-header " in head.split(b"\r\n", 1)[0]:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nContent-Length: 0\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        head = read_head(conn)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def upstream(ca: trustme.CA) -> Iterator[RawUpstream]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    u = RawUpstream(answer, tls=server)
    yield u
    u.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, upstream: RawUpstream) -> Iterator[GatewayProc]:
    home = tmp_path_factory.mktemp("tls")
    bundle = home / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    proc = start_gateway(routes_yaml(upstream.url, read_timeout=60), home, env={"SSL_CERT_FILE": str(bundle)})
    yield proc
    proc.stop()


def test_an_https_legacy_is_proxied_over_pooled_keep_alive_connections(gw, upstream):
    assert upstream.url.startswith("https://")
    before = upstream.connections
    with httpx.Client(base_url=gw.url) as c:
        for _ in range(20):
            r = c.get("/anything")
            assert (r.status_code, r.text) == (200, "ok")
    assert upstream.connections - before == 1  # one TLS connection, kept alive and reused


def test_the_upstream_head_limit_holds_over_tls(gw):
    r = httpx.get(gw.url + "/big-header", headers={"X-Request-Id": "tls-big-head"}, timeout=30)
    assert r.status_code == 502
    assert "response headers larger than the gateway accepts" in r.json()["message"]
    line = until(lambda: next((m for m in gw.messages() if "tls-big-head" in m and "→ 502" in m), None),
                 what="the 502's log line")
    assert "[upstream_head_size]" in line


def test_a_certificate_the_gateway_cannot_verify_is_a_502_saying_why(tmp_path: Path, upstream):
    # No SSL_CERT_FILE: the test CA is not among the ones trusted by default.
    gw = start_gateway(routes_yaml(upstream.url), tmp_path, env={"SSL_CERT_FILE": ""})
    try:
        r = httpx.get(gw.url + "/anything", headers={"X-Request-Id": "tls-untrusted"})
        assert r.status_code == 502 and "tls-untrusted" in r.text
        line = until(lambda: next((m for m in gw.messages() if "tls-untrusted" in m), None),
                     what="the 502's log line")
        assert "certificate was refused" in line and "SSL_CERT_FILE" in line, line
    finally:
        gw.stop()
