"""The upstream held to bounds, over real sockets: a scripted hostile upstream
behind the real gateway. Oversized and endless response heads, header floods,
interim-answer floods and a 101 are refused with a 502 the moment a limit is
passed (and logged with the limit and the request id); an upstream that
trickles is cut at ``legacy.total_timeout``. After each case the gateway's
descriptors and memory are back where they were."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.raw_upstream import RawUpstream
from tests.support.waiting import until

MIB = 1 << 20


class Hostile:
    """What each path of the scripted upstream answers, and whether the
    gateway let it send all of it."""

    def __init__(self) -> None:
        self.finished: dict[str, bool] = {}  # path → the whole answer was written
        self.upstream = RawUpstream(self.handle)

    def handle(self, conn: socket.socket, head: bytes) -> None:
        target = head.split(b" ", 2)[1].decode()
        url = urlsplit(target)
        n = int(parse_qs(url.query).get("n", ["0"])[0])
        answer = getattr(self, "answer_" + url.path.strip("/").replace("-", "_"))
        try:
            for piece in answer(n):
                conn.sendall(piece)
            self.finished[url.path] = True
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)  # until the gateway closes
        except OSError:
            self.finished[url.path] = False  # the gateway cut us off

    @staticmethod
    def answer_ok(n: int) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    @staticmethod
    def answer_big_header(mib: int) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nX-Big: "
        for _ in range(mib):
            yield b"a" * MIB
        yield b"\r\nContent-Length: 0\r\n\r\n"

    @staticmethod
    def answer_many_headers(n: int) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\n"
        for i in range(0, n, 10_000):
            yield b"X-H: v\r\n" * min(10_000, n - i)
        yield b"Content-Length: 0\r\n\r\n"

    @staticmethod
    def answer_interim(n: int) -> Iterator[bytes]:
        for i in range(0, n, 10_000):
            yield b"HTTP/1.1 100 Continue\r\n\r\n" * min(10_000, n - i)
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    @staticmethod
    def answer_switch(n: int) -> Iterator[bytes]:
        yield b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        yield b"\x81\x05hello"  # what a websocket would send next

    @staticmethod
    def answer_big_trailer(mib: int) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
        for _ in range(mib):
            yield b"t" * MIB
        yield b"\r\n\r\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hostile, GatewayProc]]:
    h = Hostile()
    # A read_timeout far beyond any case: a refusal must come from a limit, at once.
    gw = start_gateway(routes_yaml(h.upstream.url, read_timeout=120), tmp_path_factory.mktemp("gateway"))
    try:
        yield h, gw
    finally:
        gw.stop()
        h.upstream.close()


def settled(gw: GatewayProc) -> int:
    """The gateway's open descriptors once no upstream connection is open."""
    until(lambda: gw.admin_get("/_gateway/health").json()["upstream"]["open_connections"] == 0,
          what="upstream connections closed")
    return gw.open_fds()


CASES = [  # (path, request id, what the client is told the upstream sent, the limit the log names)
    ("/big-header?n=1", "head-1mib", "response headers larger than the gateway accepts", "upstream_head_size"),
    ("/big-header?n=64", "head-64mib", "response headers larger than the gateway accepts", "upstream_head_size"),
    ("/many-headers?n=100000", "headers-100k", "more header fields than the gateway accepts", "upstream_header_count"),
    ("/interim?n=200000", "interim-200k", "more interim (1xx) answers than the gateway accepts",
     "upstream_interim_responses"),
    ("/switch", "switch-101", "101 Switching Protocols, which the gateway never asks for", "upgrade"),
]


@pytest.mark.parametrize("path,request_id,what,limit", CASES, ids=[c[1] for c in CASES])
def test_a_response_head_over_the_limits_is_a_502_naming_the_limit_in_the_log(hostile, path, request_id, what, limit):
    h, gw = hostile
    assert httpx.get(gw.url + "/ok", timeout=10).text == "ok"
    fds, rss, peak = settled(gw), gw.rss_kib(), gw.rss_kib("VmHWM")

    r = httpx.get(gw.url + path, headers={"X-Request-Id": request_id}, timeout=30)

    assert r.status_code == 502
    assert r.json() == {"message": f"Bad gateway: the legacy Go backend sent {what}. "
                                   f"Request id {request_id} — the gateway's log has the details."}
    assert h.upstream.url not in r.text and "X-H" not in r.text
    # Ops find which limit, where, by the request id.
    line = until(lambda: next((m for m in gw.messages() if request_id in m and "→ 502" in m), None),
                 what="the 502's log line")
    assert f"[{limit}]" in line and h.upstream.url in line
    # The upstream connection was aborted, not read to its end...
    until(lambda: urlsplit(path).path in h.finished, what="the upstream handler to end")
    if request_id == "head-64mib":  # far more than socket buffers hold
        assert h.finished[urlsplit(path).path] is False
    # ...and descriptors and memory are back where they were.
    until(lambda: gw.open_fds() <= fds, what=f"descriptors back to {fds} (now {gw.open_fds()})")
    assert (gw.rss_kib("VmHWM") - peak) < 16 * 1024, "peak RSS grew by 16 MiB or more"
    assert (gw.rss_kib() - rss) < 8 * 1024
    assert httpx.get(gw.url + "/ok", timeout=10).text == "ok"


def test_an_oversized_trailer_section_aborts_the_client_connection(hostile):
    _, gw = hostile
    fds = settled(gw)
    with (pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
          httpx.stream("GET", gw.url + "/big-trailer?n=8", headers={"X-Request-Id": "trailer-8mib"},
                       timeout=30) as r):
        assert r.status_code == 200
        r.read()  # the body so far arrives, but never as a complete answer
    until(lambda: any("trailer-8mib" in ln and "trailer section over 65536 bytes" in ln
                      for ln in gw.lines()), what="the mid-body log line")
    until(lambda: gw.open_fds() <= fds, what="descriptors back")


# -- legacy.total_timeout: a whole exchange, however the upstream trickles ----

@pytest.fixture
def trickler():
    """An upstream that sends ``head`` and then one byte every 50 ms, for ever
    (or until the gateway hangs up, which ``cut`` records)."""
    cut = threading.Event()

    def handler(conn: socket.socket, head: bytes) -> None:
        slow_head = b"/slow-head" in head.split(b"\r\n", 1)[0]
        try:
            if slow_head:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(600):  # 30 s at most
                conn.sendall(b"a" if slow_head else b"1\r\na\r\n")
                time.sleep(0.05)
        except OSError:
            cut.set()

    u = RawUpstream(handler)
    yield u, cut
    u.close()


def test_total_timeout_before_the_answer_is_a_504(trickler, gateway_factory):
    u, cut = trickler
    gw = gateway_factory(routes_yaml(u.url, read_timeout=120, extra_legacy="  total_timeout: 1\n"))
    fds = settled(gw)
    r = httpx.get(gw.url + "/slow-head", headers={"X-Request-Id": "total-head"}, timeout=30)
    assert r.status_code == 504
    assert r.json() == {"message": "Gateway timeout: the legacy Go backend did not answer in time. "
                                   "Request id total-head — the gateway's log has the details."}
    until(lambda: any("total-head" in ln and "legacy.total_timeout (1 s)" in ln for ln in gw.lines()),
          what="the 504's log line")
    assert cut.wait(10), "the upstream connection was left open"
    until(lambda: gw.open_fds() <= fds, what="descriptors back")


def test_total_timeout_after_the_answer_started_aborts_the_client_connection(trickler, gateway_factory):
    u, cut = trickler
    gw = gateway_factory(routes_yaml(u.url, read_timeout=120, extra_legacy="  total_timeout: 1\n"))
    fds = settled(gw)
    got = b""
    with (pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
          httpx.stream("GET", gw.url + "/slow-body", headers={"X-Request-Id": "total-body"}, timeout=30) as r):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    assert got and set(got) == {ord("a")}  # what came before the deadline was relayed
    until(lambda: any("total-body" in ln and "total_timeout" in ln and "aborting the client connection" in ln
                      for ln in gw.lines()), what="the abort's log line")
    assert cut.wait(10), "the upstream connection was left open"
    until(lambda: gw.open_fds() <= fds, what="descriptors back")
    record = until(lambda: next((r for r in gw.access_records() if "/slow-body" in r["path"]), None),
                   what="the access-log line")
    assert record["upstream_error"] == "TotalTimeout"


def test_without_total_timeout_a_trickling_answer_is_still_relayed(trickler, gateway_factory):
    u, cut = trickler
    gw = gateway_factory(routes_yaml(u.url, read_timeout=120))
    with httpx.stream("GET", gw.url + "/slow-body", timeout=30) as r:
        chunks = r.iter_raw()
        got = b""
        deadline = time.monotonic() + 2  # past where total_timeout 1 cut the same answer above
        while time.monotonic() < deadline:
            got += next(chunks)
    assert len(got) > 10 and not cut.is_set()
