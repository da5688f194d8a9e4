"""Fuzz the request head and the route matcher, over real sockets (hypothesis,
derandomized so CI runs the same examples; a few seconds).

Invariant: the backend that receives a request is the one the route table
assigns to the path *that backend* will interpret — the Go stand-in routes as
Echo does (on the raw path when it is not Go's canonical encoding, else on the
decoded one), the Python probe (tests/fakeservices/pathprobe) on uvicorn's
decoded ``scope["path"]`` — and the gateway's own reading (paths.py) agrees;
anything it can't route safely is a 400, never a wrong backend. Nothing under
``/_gateway/`` ever reaches a backend. Which backend got a request is read from
the backend's own answer (the echo's ``uri``, the probe's ``x-backend``) and
from the access log, by request id.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from urllib.parse import unquote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routing.paths import BadPath, is_under, match_path
from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.rawhttp import RawResponse, exchange
from tests.support.standin import StandIn
from tests.support.waiting import until

pytestmark = pytest.mark.long(seconds=10)

ROUTES = {  # prefix → state; everything else: default go
    "/_standin/echo/py": "python",
    "/_standin/echo/py/go": "go",
    "/_standin/echo/go": "go",
    "/_standin/echo/go/py": "python",
}
ADMIN = "/_gateway"


def route_of(path: str) -> str:
    """The prefix of the route the table gives ``path`` ("" for the default)."""
    return max((p for p in ROUTES if is_under(path, p)), key=len, default="")


def owner(path: str) -> str:
    return ROUTES.get(route_of(path), "go")


def under_admin(path: str) -> bool:
    return is_under(path, ADMIN)


# -- how Go reads a path (net/url + Echo's GetPath) -----------------------------------------
_GO_KEEP = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@")
_HEX = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def go_routing_path(raw: bytes) -> str | None:
    """Echo routes on URL.RawPath when set — net/url sets it when the raw path
    is not the canonical escaping of the decoded one — else on URL.Path.
    None: net/url refuses the path (Go answers 400 itself)."""
    if _HEX.search(raw):
        return None
    decoded = unquote_to_bytes(raw)
    canonical = b"".join(bytes([c]) if c in _GO_KEEP else b"%%%02X" % c for c in decoded)
    if canonical != raw:
        return raw.decode("latin-1")
    return decoded.decode("utf-8", "replace")


# -- requests ----------------------------------------------------------------------------
SEGMENTS = ["_standin", "echo", "py", "go", "_gateway", "health", "routes", "x", ".", "..", "",
            "%2F", "%2f", "%2e", "%2E%2E", "%5C", "%5c", "\\", "%70y", "g%6F", "%67o", "%5Fgateway", "%5fstandin",
            "ech%6F", "%00", "%20", "%09", ";", "%3F", "%23", "%", "%zz", "%C3%A9", "%FF", "~", "!", "$", "&", "'",
            "(", ")", "*", "+", ",", "=", "@", ":", "PY", "Go", "_GATEWAY", "py%2Fgo", "go%2Fpy", "..%2F",
            "%2E", "a%2F..%2F..", "%252F", "é"]
PREFIXES = ["/_standin/echo", "/_standin/echo/py", "/_standin/echo/go", "/_gateway", "", "/_standin"]


@st.composite
def targets(draw) -> bytes:
    prefix = draw(st.sampled_from(PREFIXES))
    tail = draw(st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5))
    path = prefix + "".join("/" + s for s in tail)
    if not path.startswith("/"):
        path = "/" + path
    if draw(st.booleans()) and draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["x=1", "p=/_gateway/health", "a=%2F..", "", "q=py/go"]))
    return path.encode("utf-8")


@st.composite
def heads(draw) -> tuple[bytes, bytes, bytes]:
    """(method, target, extra header lines)."""
    # Not OPTIONS: the CORS layer answers it on any path, before routing.
    method = draw(st.sampled_from([b"GET", b"POST", b"DELETE", b"HEAD"]))
    extra = draw(st.lists(st.sampled_from([
        b"X-Forwarded-For: 6.6.6.6", b"X-Gateway-Backend: python", b"X-Gateway-Admin-Token: guess",
        b"Transfer-Encoding: chunked", b"Content-Length: 0", b"Expect: 100-continue", b"X-Pad: " + b"p" * 4000,
        b"Host: other.example", b"Connection: keep-alive",
    ]), max_size=3, unique=True))
    return method, draw(targets()), b"".join(line + b"\r\n" for line in extra)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[GatewayProc]:
    routes = "".join(f"  - prefix: {p}\n    to: {s}\n" for p, s in ROUTES.items())
    proc = start_gateway(routes_yaml(standin.url, routes), tmp_path_factory.mktemp("fuzz"))
    yield proc
    proc.stop()


_counter = iter(range(1_000_000))
REACHED = dict.fromkeys(("go", "python", "admin", "bad path", "readings disagree", "edge"), 0)  # what the fuzz examples reached


def send(gw: GatewayProc, method: bytes, target: bytes, extra: bytes) -> tuple[str, RawResponse]:
    request_id = f"fz{next(_counter)}"
    body = b"0\r\n\r\n" if b"chunked" in extra else b""
    head = (method + b" " + target + b" HTTP/1.1\r\nHost: h\r\nX-Request-Id: " + request_id.encode() + b"\r\n"
            + extra + b"Connection: close\r\n\r\n")
    return request_id, exchange(gw.port, head + body)


def fingerprint(resp: RawResponse) -> str | None:
    """Which backend's own answer this is, if any: the probe marks itself;
    the echo reflects the request (``uri``)."""
    if resp.header(b"x-backend") == b"python":
        return "python"
    if resp.body.startswith(b"{") and b'"uri"' in resp.body and b'"raw_head"' in resp.body:
        return "go"
    return None


def probe(gw: GatewayProc, head: tuple[bytes, bytes, bytes]) -> tuple[str, Callable[[str], None]] | None:
    """Send one request and check what its answer shows. When the access log
    must say more (which backend the table gave it), return its request id
    and the check of that backend, to run once the line is written."""
    method, target, extra = head
    raw_path, _, query = target.partition(b"?")
    request_id, resp = send(gw, method, target, extra)
    seen = fingerprint(resp)
    try:
        path = match_path(raw_path, query)
    except BadPath:
        path = None
    if path is None or under_admin(path):
        # Rejected (400) or the gateway's own surface: no backend answers.
        assert seen is None, (target, resp.head, resp.body[:300])
        if path is None:
            assert resp.status == 400, (target, resp.head)
        REACHED["bad path" if path is None else "admin"] += 1
        return None
    # Every reading of the raw path: the gateway's, Go's (Echo), Python's (uvicorn).
    readings = [r for r in (path, go_routing_path(raw_path), unquote(raw_path.decode("ascii"))) if r is not None]
    agree = len({route_of(r) for r in readings}) == 1 and not any(under_admin(r) for r in readings)
    if seen is None and resp.status == 400 and resp.header(b"x-request-id") is None:
        # No backend had it and the app never ran: refused at the edge (a
        # byte llhttp won't take in a target, or framing it refuses, is a 400
        # before the app; every answer of the app carries the request id).
        REACHED["edge"] += 1
        return None

    def check(backend: str) -> None:
        if backend == "gateway":
            # The gateway refused it: only when the readings disagree on the route.
            assert resp.status == 400 and not agree, (target, readings, resp.head)
            REACHED["readings disagree"] += 1
            return
        assert agree, (target, readings, backend)  # a disagreement must never reach a backend
        assert backend == owner(path), (target, path, backend)
        REACHED[backend] += 1
        if backend == "go":
            if seen == "go":
                # Forwarded byte for byte (except an empty query's lone "?", which
                # the forwarder drops: harmless to routing, noted in the report).
                assert json.loads(resp.body)["uri"].encode("utf-8") == target.removesuffix(b"?")
        elif method != b"HEAD":
            assert seen == "python", (target, resp.head)
            got = json.loads(resp.body)
            assert got["raw_path"].encode("latin-1") == raw_path
            assert route_of(got["path"]) == route_of(path) and not under_admin(got["path"]), (target, got)

    return request_id, check


# Each example is a burst of requests, one after another: the access log is
# written in batches (every 50 ms), so the burst's lines are awaited once, not
# request by request. ~800 requests in all; a failing burst shrinks to the one
# request that fails.
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(burst=st.lists(heads(), min_size=1, max_size=10))
def fuzz_bursts(gw: GatewayProc, burst: list[tuple[bytes, bytes, bytes]]) -> None:
    pending = [p for p in (probe(gw, head) for head in burst) if p is not None]
    if not pending:
        return
    wanted = {request_id for request_id, _ in pending}

    def logged() -> dict[str, str] | None:
        backends = {r["request_id"]: r["backend"] for r in gw.access_records() if r["request_id"] in wanted}
        return backends if len(backends) == len(wanted) else None

    backends = until(logged, 5, what=f"the access-log lines of {sorted(wanted)}")
    for request_id, check in pending:
        check(backends[request_id])


def test_the_backend_that_gets_a_request_is_the_one_the_table_assigns_it(gw):
    """One test, so the checks that read what the fuzz did run after it, on the
    same gateway, whichever worker runs it (tests of a module may be split
    among workers)."""
    fuzz_bursts(gw)
    # Not vacuous: the examples reached each backend many times.
    wanted = {"go": 100, "python": 30, "admin": 10, "bad path": 30, "readings disagree": 3}
    assert all(REACHED[k] >= n for k, n in wanted.items()), str(REACHED)
    # No access-log line names a backend for a path the gateway reads as its own surface.
    for record in gw.access_records():
        if record["backend"] in ("go", "python"):
            try:
                path = match_path(record["path"].encode("latin-1").partition(b"?")[0])
            except BadPath:
                continue
            assert not under_admin(path), record
