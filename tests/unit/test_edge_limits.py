"""The edge's limits, head scanner, descriptor arithmetic and path readings, in process."""
from __future__ import annotations

import argparse

import pytest

from gateway.edge import descriptors
from gateway.edge.headscan import HeadScanner
from gateway.edge.limits import (
    EdgeLimits,
    LiveLimits,
    add_flags,
    from_flags,
    from_routes_yaml,
)
from gateway.routing.config import parse_config
from gateway.routing.paths import BadPath
from gateway.routing.readings import check_readings, go_reading, python_reading
from services.common.settings import SettingsError

# -- EdgeLimits -----------------------------------------------------------------------

def test_defaults_are_the_routes_yaml_ones():
    assert EdgeLimits() == EdgeLimits(request_line=8192, header_line=8192, header_count=100, head_size=32768,
                                      head_timeout=10, body_idle_timeout=30, keepalive_timeout=5,
                                      max_connections=4096)


def test_workers_read_what_serve_was_told():
    limits = EdgeLimits(head_timeout=2.5, max_connections=10)
    assert EdgeLimits.from_env(limits.to_env()) == limits
    assert EdgeLimits.from_env({}) == EdgeLimits()  # the env defaults are the dataclass ones
    assert limits.to_env()["GATEWAY_MAX_CONNECTIONS"] == "10"


@pytest.mark.parametrize("bad", [{"head_size": 0}, {"head_timeout": -1}, {"max_connections": True}])
def test_nonsense_limits_are_refused(bad):
    with pytest.raises(ValueError):
        EdgeLimits(**bad)


def test_flags_with_env_fallback():
    parser = argparse.ArgumentParser()
    add_flags(parser, EdgeLimits.from_env({"GATEWAY_HEADER_COUNT": "50"}))
    args = parser.parse_args(["--max-connections", "7", "--keepalive-timeout", "1.5"])
    assert from_flags(args) == EdgeLimits(header_count=50, max_connections=7, keepalive_timeout=1.5)


def test_a_bad_env_value_names_the_variable():
    with pytest.raises(SettingsError, match="GATEWAY_HEAD_TIMEOUT"):
        EdgeLimits.from_env({"GATEWAY_HEAD_TIMEOUT": "soon"})


def test_live_limits_overlay_what_routes_yaml_sets_explicitly():
    live = LiveLimits(EdgeLimits(max_connections=100, head_timeout=7))
    assert live.current() == live.base  # no config attached yet
    plain = parse_config("routes: []\n")
    assert from_routes_yaml(plain) == {}  # no `limits:` block: the flags rule
    config = parse_config("limits:\n  head_timeout: 3\n  python_body: 2048\nroutes: []\n")
    assert from_routes_yaml(config) == {"head_timeout": 3}  # only what the file sets, only edge keys
    live.attach(lambda: config)
    assert live.current() == EdgeLimits(max_connections=100, head_timeout=3)
    assert EdgeLimits().merged({"nonsense": 1, "head_size": None}) == EdgeLimits()


# -- descriptors ------------------------------------------------------------------------

def test_the_connection_ceiling_keeps_the_reserve():
    reserve = 512 + descriptors.FIXED_RESERVE + descriptors.LINGER_BUDGET
    assert descriptors.reserve(512) == reserve
    assert descriptors.connection_ceiling(4096, 1024, 512) == 1024 - reserve
    assert descriptors.connection_ceiling(4096, 1 << 20, 512) == 4096
    assert descriptors.connection_ceiling(4096, 100, 512) == 1  # never zero: log says why


def test_the_soft_limit_is_raised_to_the_hard_one():
    before, after, hard = descriptors.raise_nofile_limit()
    assert after >= before and (after == hard or hard == descriptors.resource.RLIM_INFINITY)


# -- the head scanner -------------------------------------------------------------------

def scan(data: bytes, limits: EdgeLimits | None = None, pieces: int = 1):
    scanner = HeadScanner(limits or EdgeLimits())
    step = max(1, -(-len(data) // pieces))
    result = None
    for i in range(0, len(data), step):
        piece = data[i:i + step]
        end, done, verdict = scanner.scan(piece)
        result = (i + end, done, verdict)
        if done or verdict:
            return result
    return result


@pytest.mark.parametrize("pieces", [1, 2, 7, 1000])
def test_a_plain_head_ends_at_its_blank_line_however_it_arrives(pieces):
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
    end, done, verdict = scan(head + b"BODY", pieces=pieces) if pieces == 1 else scan(head, pieces=pieces)
    assert done and verdict is None and end == len(head)


@pytest.mark.parametrize("pieces", [1, 3, 500])
@pytest.mark.parametrize("head, status, limit", [
    (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414, "request_line"),
    (b"GET / HTTP/1.1\r\nX: " + b"v" * 100 + b"\r\n\r\n", 431, "header_line"),
    (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 11 + b"\r\n", 431, "header_count"),
    (b"GET / HTTP/1.1\r\n" + b"X: 12345678\r\n" * 9 + b"\r\n", 431, "head_size"),
    (b"\r\n" * 200, 431, "head_size"),  # blank lines before a request line still count
])
def test_each_limit(head, status, limit, pieces):
    limits = EdgeLimits(request_line=64, header_line=64, header_count=10, head_size=128)
    _, done, verdict = scan(head, limits, pieces)
    assert verdict is not None and (verdict.status, verdict.limit) == (status, limit)
    assert not done


def test_exactly_at_the_limits_passes():
    limits = EdgeLimits(request_line=20, header_line=10, header_count=2, head_size=60)
    head = b"GET /" + b"a" * 6 + b" HTTP/1.1\r\nX: 1234567\r\nY: 1\r\n\r\n"
    assert len(b"GET /" + b"a" * 6 + b" HTTP/1.1") == 20 and len(head) <= 60
    for pieces in (1, 5, len(head)):
        _, done, verdict = scan(head, limits, pieces)
        assert done and verdict is None


def test_an_unfinished_line_is_cut_before_its_end_arrives():
    scanner = HeadScanner(EdgeLimits(header_line=100))
    assert scanner.scan(b"GET / HTTP/1.1\r\nX: ")[2] is None
    assert scanner.scan(b"v" * 90)[2] is None
    assert scanner.scan(b"v" * 20)[2].limit == "header_line"


def test_a_cr_split_from_its_lf_is_not_counted_as_content():
    limits = EdgeLimits(request_line=14)
    scanner = HeadScanner(limits)
    assert scanner.scan(b"GET / HTTP/1.1\r")[2] is None  # 14 bytes + a CR whose LF is still to come
    end, done, verdict = scanner.scan(b"\n\r\n")
    assert verdict is None and done and end == 3


def test_the_scanner_is_ready_for_the_next_head():
    scanner = HeadScanner(EdgeLimits())
    data = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHo"
    end, done, _ = scanner.scan(data)
    assert done and data[end:].startswith(b"GET /b")
    end2, done2, verdict = scanner.scan(data, end)
    assert not done2 and verdict is None and end2 == len(data) and scanner.lines == 1


# -- how each backend reads a path --------------------------------------------------------

@pytest.mark.parametrize("raw, go", [
    (b"/users/7", "/users/7"),
    (b"/caf%C3%A9", "/café"),  # Go's own escaping: routes on the decoded path
    (b"/g%6F", "/g%6F"),  # not Go's escaping: Echo routes on the raw path
    (b"/a%2Fb", "/a%2Fb"),
    (b"/a%20b", "/a b"),
    (b"/x%zz", None),  # net/url refuses it
])
def test_go_reading(raw, go):
    assert go_reading(raw) == go


def test_python_reading_is_uvicorns():
    assert python_reading(b"/a%2Fb/%70y") == "/a/b/py"


class _Table:
    def __init__(self, *prefixes: str):
        self.prefixes = prefixes

    def lookup(self, path: str, method: str) -> str:
        return max((p for p in self.prefixes if path == p or path.startswith(p + "/")), key=len, default="*")


@pytest.mark.parametrize("raw, path, ok", [
    (b"/x/%41bc", "/x/Abc", True),  # decoded alike for routing: one route
    (b"/x/a%2Fb", "/x/a%2Fb", True),
    (b"/x/g%6F", "/x/go", False),  # Go would route /x/g%6F under /x, the gateway under /x/go
    (b"/x/go%2Fpy", "/x/go%2Fpy", False),  # Python would read /x/go/py
    (b"/_gateway%2Fhealth", "/_gateway%2Fhealth", False),  # Python would read /_gateway/health
    (b"/_gateway/%68ealth", "/_gateway/health", True),  # the gateway's own: no backend reads it
])
def test_check_readings(raw, path, ok):
    table = _Table("/x", "/x/go")
    if ok:
        check_readings(raw, path, table, "GET", "/_gateway")
    else:
        with pytest.raises(BadPath):
            check_readings(raw, path, table, "GET", "/_gateway")


def test_the_uvicorn_release_the_edge_protocol_was_written_against():
    import uvicorn

    from gateway.edge.protocol import UVICORN_SERIES

    assert uvicorn.__version__.startswith(UVICORN_SERIES), (
        f"uvicorn {uvicorn.__version__}: gateway/edge/protocol.py copies parts of uvicorn "
        f"{UVICORN_SERIES}x's httptools protocol; re-check them against the new release, then bump UVICORN_SERIES")


def test_a_head_measured_from_its_parts():
    from gateway.edge.headscan import measured_head

    limits = EdgeLimits(request_line=30, header_line=20, header_count=2, head_size=80)
    assert measured_head(limits, b"GET", b"/ok", [(b"host", b"h")]) is None
    assert measured_head(limits, b"GET", b"/" + b"a" * 30, []).limit == "request_line"
    assert measured_head(limits, b"GET", b"/", [(b"x", b"v" * 30)]).limit == "header_line"
    assert measured_head(limits, b"GET", b"/", [(b"x", b"1")] * 3).limit == "header_count"
    assert measured_head(EdgeLimits(head_size=40), b"GET", b"/", [(b"x", b"v" * 15)] * 2).limit == "head_size"
