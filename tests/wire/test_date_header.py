"""Every answer carries exactly one ``Date`` (RFC 9110 §6.6.1), over real sockets.

uvicorn's own Date is off (``date_header=False``) so a proxied answer keeps the
Go backend's; the answers the gateway makes itself get one from the gateway.
"""
from __future__ import annotations

import re
import socket

import httpx

from tests.support.gateway_proc import routes_yaml
from tests.support.raw_upstream import RawUpstream, read_head

IMF_FIXDATE = re.compile(r"\A(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d\d:\d\d:\d\d GMT\Z")
GO_DATE = "Tue, 01 Jan 2030 00:00:00 GMT"  # a Date no clock of ours would write


def answer_head(port: int, request: bytes) -> tuple[bytes, list[bytes]]:
    """The status line and the Date values of the raw answer head (read
    line by line: a client library could merge repeated headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        head = read_head(s)
    status, *lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return status, [line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"date:")]


def dates_on_the_wire(port: int, request: bytes) -> list[bytes]:
    return answer_head(port, request)[1]


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" + extra + b"\r\n"


def assert_one_fresh_date(dates: list[bytes]) -> None:
    assert len(dates) == 1, dates
    assert IMF_FIXDATE.match(dates[0].decode()), dates


def test_answers_the_gateway_makes_carry_one_date(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /ping\n    to: python\n"))
    cases = {
        "python route": get("/ping"),
        "python route, HEAD 405": b"HEAD /ping HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        "admin": get("/_gateway/health"),
        "admin 404": get("/_gateway/nope"),
        "bad path (400)": get("/users/../ping"),
        "CORS preflight (204)": (b"OPTIONS /users HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                                 b"Origin: http://localhost:5153\r\nAccess-Control-Request-Method: POST\r\n\r\n"),
    }
    for name, request in cases.items():
        status, dates = answer_head(gw.port, request)
        assert len(dates) == 1 and IMF_FIXDATE.match(dates[0].decode()), (name, status, dates)


def test_a_python_feature_error_carries_one_date(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /auth-test\n    to: python\n"))
    r = httpx.get(gw.url + "/auth-test")
    assert r.status_code == 401
    assert_one_fresh_date([d.encode() for d in r.headers.get_list("date")])


def test_502_and_504_carry_one_date(gateway_factory, dead_url):
    dead = dead_url
    gw = gateway_factory(routes_yaml(dead))
    status, dates = answer_head(gw.port, get("/users"))
    assert status.startswith(b"HTTP/1.1 502")
    assert_one_fresh_date(dates)

    def never_answers(conn: socket.socket, head: bytes) -> None:
        conn.recv(1)  # hold the connection until the gateway gives up

    silent = RawUpstream(never_answers)
    try:
        gw = gateway_factory(routes_yaml(silent.url, read_timeout=0.3))
        status, dates = answer_head(gw.port, get("/users"))
        assert status.startswith(b"HTTP/1.1 504")
        assert_one_fresh_date(dates)
    finally:
        silent.close()


def test_a_proxied_answer_keeps_the_backends_one_date(gateway_factory, standin):
    def go_like(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: " + GO_DATE.encode()
                     + b"\r\nContent-Length: 2\r\n\r\nok")

    upstream = RawUpstream(go_like)
    try:
        gw = gateway_factory(routes_yaml(upstream.url))
        assert dates_on_the_wire(gw.port, get("/users")) == [GO_DATE.encode()]
    finally:
        upstream.close()
    # and the real Go server's answers, whatever the route
    gw = gateway_factory(routes_yaml(standin.url))
    for path in ("/ping", "/users", "/no/such/route"):
        assert_one_fresh_date(dates_on_the_wire(gw.port, get(path)))


def request_ids_on_the_wire(port: int, request: bytes) -> tuple[bytes, list[bytes]]:
    """The status line and the X-Request-Id values of the raw answer head."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        head = read_head(s)
    status, *lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return status, [line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"x-request-id:")]


def test_a_proxied_answer_gets_what_it_lacks_of_date_and_request_id_once(gateway_factory):
    # RFC 9110 §6.6.1: a recipient with a clock that forwards an answer
    # without Date adds one. The gateway's X-Request-Id is added only when
    # the backend sent none; one that the backend's Connection header names
    # is hop-by-hop, dropped, and so the gateway's. One of each, always.
    def backend(conn: socket.socket, head: bytes) -> None:
        target = head.split(b" ", 2)[1]
        extra = {
            b"/users": b"",
            b"/users/own-id": b"X-Request-Id: from-go\r\n",
            b"/users/named": b"Connection: X-Request-Id, date\r\nX-Request-Id: from-go\r\nDate: "
                             + GO_DATE.encode() + b"\r\n",
        }[target]
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + extra + b"Content-Length: 2\r\n\r\nok")

    upstream = RawUpstream(backend)
    try:
        gw = gateway_factory(routes_yaml(upstream.url))
        for path, expected_id in (("/users", None), ("/users/own-id", b"from-go"), ("/users/named", None)):
            dates = dates_on_the_wire(gw.port, get(path))
            assert_one_fresh_date(dates)
            assert dates != [GO_DATE.encode()], path
            status, ids = request_ids_on_the_wire(gw.port, get(path))
            assert status.startswith(b"HTTP/1.1 200") and len(ids) == 1, (path, ids)
            assert ids[0] == expected_id if expected_id else re.fullmatch(rb"[0-9a-f]{32}", ids[0]), (path, ids)
    finally:
        upstream.close()


def test_every_answer_to_a_routed_request_carries_one_request_id(gateway_factory, standin, dead_url):
    # Whoever answers (Go, a Python feature, the gateway's own 400 or 502),
    # the client gets the request's id once: the one it sent, when sane.
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /ping\n    to: python\n"))
    dead = gateway_factory(routes_yaml(dead_url))
    cases = {
        "proxied": (gw, get("/users/db-has-users")),
        "proxied 404": (gw, get("/no/such/route")),
        "python route": (gw, get("/ping")),
        "python route, HEAD 405": (gw, b"HEAD /ping HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"),
        "bad path (400)": (gw, get("/users/../ping")),
        "502": (dead, get("/users")),
    }
    for name, (server, request) in cases.items():
        status, ids = request_ids_on_the_wire(server.port, request)
        assert len(ids) == 1 and re.fullmatch(rb"[0-9a-f]{32}", ids[0]), (name, status, ids)
        status, ids = request_ids_on_the_wire(server.port, request.replace(b"\r\n\r\n", b"\r\nX-Request-Id: mine-1\r\n\r\n"))
        assert ids == [b"mine-1"], (name, status, ids)


def test_the_date_text_is_built_once_a_second(monkeypatch):
    from gateway import httpdate

    clock = [0.25]
    monkeypatch.setattr(httpdate.time, "time", lambda: clock[0])
    first = httpdate.http_date()
    assert first == b"Thu, 01 Jan 1970 00:00:00 GMT"
    clock[0] = 0.75
    assert httpdate.http_date() is first  # same second: the cached bytes
    clock[0] = 86400 * 365 + 1
    assert httpdate.http_date() == b"Fri, 01 Jan 1971 00:00:01 GMT"
    headers = [(b"Date", b"kept")]
    assert httpdate.add_date(headers) == [(b"Date", b"kept")]
