"""Request and response framing at the edge, over raw sockets, gateway ⇄ Go stand-in:
trailers stay out of the forwarded head, HTTP/1.0 clients get close-delimited
bodies, a request body that stops gets 408, a client that stops reading its
answer is cut loose, and a malformed body is a 400 only while nothing has been
handed over — never for a request that may have run."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.rawhttp import (
    assert_back_near,
    connect,
    exchange,
    footprint,
    read_until_close,
)
from tests.support.standin import StandIn, start_standin
from tests.support.waiting import until

pytestmark = pytest.mark.long(seconds=34)

EMAIL, PASSWORD = "ada@example.com", "correct horse"
BODY_IDLE = 1.5
SEND_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    s = start_standin(str(tmp_path_factory.mktemp("standin") / "app_data.db"),
                      extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[GatewayProc]:
    proc = start_gateway(routes_yaml(standin.url, "  - prefix: /_bigbody\n    to: python\n"),
                         tmp_path_factory.mktemp("framing"),
                         args=["--body-idle-timeout", str(BODY_IDLE), "--send-timeout", str(SEND_TIMEOUT)])
    yield proc
    proc.stop()


@pytest.fixture
def baseline(gw: GatewayProc) -> Iterator[None]:
    """Descriptors and RSS before a hostile case; both back near them after."""
    assert httpx.get(gw.url + "/_standin/small").status_code == 200  # warm: pool and imports in the baseline
    before = footprint(gw)
    yield
    assert_back_near(gw, before)


def _active(standin: StandIn) -> int:
    return httpx.get(standin.url + "/_standin/stats").json()["active_requests"]


def _db_errors(standin: StandIn) -> dict[str, int]:
    """The stand-in's SQLite errors so far (``busy``: "database is locked")."""
    return httpx.get(standin.url + "/_standin/db-errors").json()


def _access(gw: GatewayProc, needle: str) -> dict:
    return until(lambda: next((r for r in gw.access_records() if needle in r["path"] or needle == r["request_id"]),
                              None), 10, what=f"an access-log line for {needle}")


# -- trailers ----------------------------------------------------------------------------

@pytest.mark.parametrize("same_read", [True, False], ids=["same-read-as-head", "later-read"])
def test_trailer_fields_never_reach_go_as_request_headers(gw, same_read, baseline):
    head = (b"POST /_standin/echo/trailers HTTP/1.1\r\nHost: api.example.com\r\n"
            b"Transfer-Encoding: chunked\r\nTrailer: Authorization\r\nConnection: close\r\n\r\n")
    body = (b"5\r\nhello\r\n0\r\nAuthorization: Bearer stolen\r\nHost: evil.example\r\n"
            b"X-Injected: 1\r\n\r\n")
    with connect(gw.port) as s:
        if same_read:
            s.sendall(head + body)
        else:
            s.sendall(head)
            time.sleep(0.2)
            s.sendall(body)
        raw = read_until_close(s)
    status, _, payload = raw.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), raw[:200]
    got = json.loads(payload)
    names = [n.lower() for n, _ in got["headers"]]
    assert "authorization" not in names and "x-injected" not in names
    assert names.count("host") == 1 and got["host"] == "api.example.com"
    assert b"stolen" not in raw and b"evil.example" not in raw
    assert got["body_len"] == 5


def test_an_endless_trailer_is_cut_and_memory_stays_flat(gw, standin, baseline):
    # The request is upstream when the trailer starts: the edge bounds the
    # unfinished trailer line as a header line and closes the connection.
    rss = gw.rss_kib()
    with connect(gw.port) as s:
        s.sendall(b"POST /_standin/echo/endless HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n")
        until(lambda: _active(standin) >= 1, 10, what="the request upstream")
        s.sendall(b"0\r\nX-Endless: ")
        sent, cut = 0, False
        try:
            while sent < 64 * 1024 * 1024:
                s.sendall(b"v" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            cut = True
    assert cut, "the gateway kept reading an endless trailer"
    assert (gw.rss_kib() - rss) / 1024 < 8
    until(lambda: _active(standin) == 0, 10, what="the upstream exchange cancelled")
    assert "trailer section over the header limits" in _access(gw, "/_standin/echo/endless")["edge"]


# -- HTTP/1.0 -------------------------------------------------------------------------

def test_http10_client_gets_a_close_delimited_body_never_chunked(gw):
    resp = exchange(gw.port, b"GET /_standin/stream?chunks=3&interval_ms=50 HTTP/1.0\r\nHost: h\r\n\r\n")
    assert resp.status == 200, resp.head
    assert resp.header(b"transfer-encoding") is None
    assert resp.header(b"content-length") is None
    assert resp.header(b"connection") == b"close"
    assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"  # no chunk-size lines in the body
    assert resp.closed


def test_http10_with_a_known_length_keeps_it(gw):
    resp = exchange(gw.port, b"GET /_standin/small HTTP/1.0\r\nHost: h\r\n\r\n")
    assert resp.status == 200 and resp.header(b"content-length") == b"200" and len(resp.body) == 200


def test_a_header_no_server_may_write_is_never_written(standin, tmp_path):
    """A Python feature answering a header value with CR LF in it (response
    splitting) or a name with a space: nothing of that answer reaches the
    client, its connection is closed, the log says why, and the gateway serves
    on. (A gateway of its own: the module's checks that no traceback is ever
    logged.)"""
    gw = start_gateway(routes_yaml(standin.url, "  - prefix: /_bigbody\n    to: python\n"), tmp_path)
    try:
        for kind in ("value", "name"):
            with connect(gw.port) as s:
                s.sendall(b"GET /_bigbody/bad-header?kind=" + kind.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
                raw = read_until_close(s)
            assert raw == b"", kind
            until(lambda kind=kind: f"Invalid HTTP header {kind}." in gw.output(), 10,
                  what=f"the log line for a bad {kind}")
        assert httpx.get(gw.url + "/_bigbody/bad-header?kind=ok").headers["x-echo"] == "a"  # control: a good one
        assert httpx.get(gw.url + "/_standin/small").status_code == 200
    finally:
        gw.stop()


def test_http11_streams_stay_chunked(gw):
    with httpx.stream("GET", gw.url + "/_standin/stream?chunks=2&interval_ms=10") as r:
        assert r.headers["transfer-encoding"] == "chunked" and r.read() == b"chunk 0\nchunk 1\n"


# -- a request body that stops -----------------------------------------------------------

def test_a_stalled_body_gets_408_and_the_upstream_exchange_is_cancelled(gw, standin, baseline):
    with connect(gw.port) as s:
        started = time.monotonic()
        s.sendall(b"POST /_standin/echo/stall HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        until(lambda: _active(standin) >= 1, 10, what="the request upstream")
        raw = read_until_close(s, BODY_IDLE + 10)
    assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]
    assert b"connection: close" in raw and b"request body paused" in raw
    assert BODY_IDLE - 0.3 <= time.monotonic() - started <= BODY_IDLE + 5
    until(lambda: _active(standin) == 0, 10, what="the upstream exchange cancelled")
    record = _access(gw, "/_standin/echo/stall")
    assert record["status"] == 408 and "request body idle" in record["edge"]
    until(lambda: _edge_events(gw).get("body_idle_timeout", 0) >= 1, 10, what="gateway_edge_events_total")


def _small_window(port: int) -> socket.socket:
    """A client connection with a small receive buffer (set before connecting,
    so the window is small from the start): the gateway's writes back up soon."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def _drain(s: socket.socket) -> tuple[int, bool]:
    """Read what is left until the connection ends: (bytes read, whether it
    ended — by EOF or a reset — rather than by a 10 s silence)."""
    s.settimeout(10)
    received = 0
    try:
        while chunk := s.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return received, False
    return received, True


def _read_slowly(s: socket.socket, seconds: float, size: int, pause: float) -> int:
    """Take ``size`` bytes at a time with ``pause`` s between reads for
    ``seconds``; the connection must stay open all along. Returns bytes read."""
    got = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        chunk = s.recv(size)
        assert chunk, f"connection closed after {got} bytes"
        got += len(chunk)
        time.sleep(pause)
    return got


def test_a_client_that_stops_reading_is_cut_loose_and_frees_the_upstream(gw, standin, baseline):
    with _small_window(gw.port) as s:
        s.sendall(b"GET /_standin/download?size=268435456 HTTP/1.1\r\nHost: h\r\nX-Request-Id: no-reader\r\n\r\n")
        until(lambda: _active(standin) >= 1, 10, what="the download upstream")
        # Nothing is read: the gateway's buffers fill, its writes wait, and
        # after SEND_TIMEOUT it aborts the connection and cancels the download.
        until(lambda: _active(standin) == 0, SEND_TIMEOUT + 15, what="the upstream exchange cancelled")
        # What was buffered before the cut can still be read; then the connection ends.
        received, closed = _drain(s)
    assert closed, f"the connection was left open ({received} bytes read)"
    assert received < 268435456  # cut off, not finished
    record = _access(gw, "no-reader")
    assert "read none of the answer" in record["edge"], record
    # Counted for the operator too, every one (the log line is throttled).
    until(lambda: _edge_events(gw).get("send_timeout", 0) >= 1, 10, what="gateway_edge_events_total")


def _edge_events(gw: GatewayProc) -> dict[str, float]:
    """gateway_edge_events_total by limit, as a scraper reads it."""
    return {dict(labels)["limit"]: value for (name, labels), value in gw.scrape().items()
            if name == "gateway_edge_events_total"}


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
def test_an_answer_written_whole_but_never_read_is_cut_too(gw, keep_alive, baseline):
    """The whole answer sits in the write buffer and the app is done: the
    connection is closing (Connection: close) or idle (keep-alive), and would
    wait for ever for a client that reads nothing."""
    size = 4 << 20
    with _small_window(gw.port) as s:
        s.sendall(f"GET /_bigbody?size={size} HTTP/1.1\r\nHost: h\r\n".encode()
                  + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
        time.sleep(SEND_TIMEOUT + 3)  # read nothing, well past send_timeout
        received, _ = _drain(s)
    assert 0 < received < size, received  # what was in flight, then the cut: not the whole answer
    until(lambda: _edge_events(gw).get("send_timeout", 0) >= 1, 10, what="gateway_edge_events_total")


def test_a_slow_reader_that_keeps_reading_is_not_cut(gw, baseline):
    """16 KiB/s of an answer written whole at once: the gateway's writes wait
    for far longer than send_timeout, but the client keeps taking bytes, so
    the connection stays (nginx: the timeout is between two successive
    writes, not for the whole answer)."""
    with _small_window(gw.port) as s:
        s.sendall(b"GET /_bigbody?size=4194304 HTTP/1.1\r\nHost: h\r\n\r\n")
        got = _read_slowly(s, 6 * SEND_TIMEOUT, 4096, 0.25)
    assert got > 0


def test_a_slow_but_steady_reader_is_not_cut(gw, standin, baseline):
    """A reader that takes its answer slowly (buffers full most of the time,
    writes waiting on it again and again) keeps its connection."""
    with _small_window(gw.port) as s:
        s.sendall(b"GET /_standin/download?size=268435456 HTTP/1.1\r\nHost: h\r\n\r\n")
        got = _read_slowly(s, 3 * SEND_TIMEOUT, 16384, 0.02)
    assert 0 < got < 64 << 20  # the reader, not the gateway, set the pace
    until(lambda: _active(standin) == 0, 15, what="the download cancelled once the reader left")


def test_a_slow_but_steady_body_is_not_cut(gw):
    with connect(gw.port) as s:
        s.sendall(b"POST /_standin/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
        for byte in b"steady":
            time.sleep(BODY_IDLE / 2)
            s.sendall(bytes([byte]))
        raw = read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["body_len"] == 6


# -- a malformed body ------------------------------------------------------------------

def _session(gw: GatewayProc) -> dict[str, str]:
    r = httpx.post(gw.url + "/sign-in", json={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text
    session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("session=")).split(";", 1)[0]
    return {"Cookie": f"{session}; csrf=edge-csrf", "X-CSRF-Token": "edge-csrf"}


def _keys(gw: GatewayProc, auth: dict[str, str]) -> set[str]:
    def listed() -> tuple[set[str]] | None:
        r = httpx.get(gw.url + "/api_keys", headers=auth)
        if r.status_code == 500 and "Failed to retrieve" in r.text:
            return None  # the legacy's SQLite has no busy timeout: "database is locked" beside a write
        assert r.status_code == 200, r.text
        return ({k["Key"] for k in r.json()},)
    return until(listed, 10, what="the API key list")[0]


def _new_key(gw: GatewayProc, auth: dict[str, str]) -> str:
    r = httpx.post(gw.url + "/api_keys", headers={**auth, "Content-Type": "application/json"},
                   content=b'{"name":"edge"}')
    assert r.status_code == 201, r.text
    return r.json()["Key"]


def _delete_head(key: str, auth: dict[str, str]) -> bytes:
    return (f"DELETE /api_keys/{key} HTTP/1.1\r\nHost: h\r\nCookie: {auth['Cookie']}\r\n"
            f"X-CSRF-Token: {auth['X-CSRF-Token']}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()


@pytest.mark.parametrize("bad", [b"zz\r\nhello\r\n0\r\n\r\n", b"5\nhello\r\n0\r\n\r\n", b"2\r\nhello\r\n0\r\n\r\n"],
                         ids=["bad-chunk-size", "bare-lf", "oversize-data"])
def test_a_body_broken_in_the_same_read_as_the_head_is_400_and_nothing_runs(gw, bad, baseline):
    auth = _session(gw)
    key = _new_key(gw, auth)
    resp = exchange(gw.port, _delete_head(key, auth) + bad)
    assert resp.status == 400 and resp.closed, resp.head
    assert resp.header(b"connection") == b"close"
    assert "Invalid HTTP request received" in json.loads(resp.body)["message"]
    assert key in _keys(gw, auth), "the DELETE ran although the client was told 400"


def test_a_body_broken_after_the_handover_is_never_a_400(gw, standin, baseline):
    # The request is upstream (Go is reading its body) when the bad chunk comes:
    # no 400 (it may have run), the upstream exchange is cancelled, the
    # connection closed, and the access log says why.
    with connect(gw.port) as s:
        s.sendall(b"POST /_standin/echo/broken HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n")
        until(lambda: _active(standin) >= 1, 10, what="the request upstream")
        s.sendall(b"zz\r\n")
        raw = read_until_close(s)
    assert raw == b"", raw[:200]
    until(lambda: _active(standin) == 0, 10, what="the upstream exchange cancelled")
    record = _access(gw, "/_standin/echo/broken")
    assert record["status"] == 499
    assert "malformed request" in record["edge"] and "after the request was handed over" in record["edge"]


def test_a_delete_that_ran_before_its_body_broke_is_not_told_400(gw, standin, baseline):
    # The case: Go deletes the key without reading the body (and, as
    # net/http does, holds its answer until the body ends). The broken chunk
    # that follows ends the connection; the client is never told "bad request".
    auth = _session(gw)
    key = _new_key(gw, auth)
    with connect(gw.port) as s:
        s.sendall(_delete_head(key, auth) + b"5\r\nhello\r\n")
        # The stand-in, as Go, has no busy timeout: a listing of the keys that
        # reads while its DELETE commits fails that DELETE ("database is
        # locked") and the key stays. The DELETE gets a head start (its handler
        # takes milliseconds; the body idle timeout is 1.5 s) before the first
        # read; a failure says whether the stand-in's database refused it.
        time.sleep(0.3)
        try:
            until(lambda: key not in _keys(gw, auth), 10, what="the DELETE run upstream")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the stand-in's SQLite errors so far: {_db_errors(standin)}") from None
        s.sendall(b"zz\r\n")
        raw = read_until_close(s)
    assert b" 400 " not in raw.split(b"\r\n", 1)[0], raw[:200]
    record = _access(gw, "/api_keys/")
    assert record["method"] == "DELETE" and "after the request was handed over" in record["edge"]


def test_the_gateway_still_serves_after_all_this(gw):
    assert httpx.get(gw.url + "/_standin/small").status_code == 200
    assert "Traceback" not in gw.output()


# -- pipelining: each head measured from its own first byte -----------------------------

def _answers(raw: bytes) -> list[tuple[int, dict]]:
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
        out.append((int(head.split()[1]), json.loads(rest[:length]) if rest[:1] == b"{" else {}))
        raw = rest[length:]
    return out


@pytest.mark.parametrize("split", [None, 7, 61, 97], ids=["one-write", "split-7", "split-61", "split-97"])
def test_pipelined_requests_behind_length_and_chunked_bodies(gw, split):
    data = (b"POST /_standin/echo/one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /_standin/echo/two HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
            b"GET /_standin/echo/three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    with connect(gw.port) as s:
        if split is None:
            s.sendall(data)
        else:
            for i in range(0, len(data), split):
                s.sendall(data[i:i + split])
                time.sleep(0.01)
        answers = _answers(read_until_close(s))
    assert [(status, body.get("uri"), body.get("body_len")) for status, body in answers] == [
        (200, "/_standin/echo/one", 5), (200, "/_standin/echo/two", 3), (200, "/_standin/echo/three", 0)]
    assert all("x-trailer" not in [n.lower() for n, _ in body["headers"]] for _, body in answers)


def test_an_oversize_pipelined_head_ends_the_connection_after_the_answer_before_it(gw, baseline):
    # Answers keep their order: the slow first one, the queued second, then the refusal.
    data = (b"GET /_standin/slow?ms=300 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /_standin/echo/second HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /_standin/echo/third HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n")
    with connect(gw.port) as s:
        s.sendall(data)
        raw = read_until_close(s)
    answers, _, refusal = raw.partition(b"HTTP/1.1 431 ")
    assert answers.startswith(b"HTTP/1.1 200") and answers.index(b"slow") < answers.index(b"/_standin/echo/second")
    assert b"a header field is over 8192 bytes" in refusal and b"connection: close" in refusal
    assert b"/_standin/echo/third" not in raw  # never forwarded


def test_limits_hold_with_several_workers(tmp_path, standin):
    # The protocol class is imported by path in each worker process.
    gw = start_gateway(routes_yaml(standin.url), tmp_path, args=["--workers", "2", "--header-count", "5"])
    try:
        for _ in range(4):
            resp = exchange(gw.port, b"GET /_standin/small HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 6 + b"\r\n")
            assert resp.status == 431 and b"more than 5 header fields" in resp.body
        assert httpx.get(gw.url + "/_standin/small").status_code == 200
    finally:
        gw.stop()


def test_a_head_pipelined_behind_a_chunked_body_in_the_same_read_is_held_to_the_limits(gw, baseline):
    data = (b"POST /_standin/echo/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /_standin/echo/big HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n")
    with connect(gw.port) as s:
        s.sendall(data)
        raw = read_until_close(s)
    answer, _, refusal = raw.partition(b"HTTP/1.1 431 ")
    assert answer.startswith(b"HTTP/1.1 200") and b"/_standin/echo/chunked" in answer
    assert b"a header field is over 8192 bytes" in refusal
    assert b"/_standin/echo/big" not in raw
