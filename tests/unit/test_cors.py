"""Edge CORS: Echo v4.13.3 semantics with the legacy configuration."""
from __future__ import annotations

from starlette.testclient import TestClient

from gateway.edge.cors import ALLOW_HEADERS, ALLOW_METHODS, CORSMiddleware, parse_origins

SEEN: list[str] = []


async def backend(scope, receive, send):
    """Looks like the forwarded Go backend: sets its own CORS headers and cookies."""
    SEEN.append(scope["method"])
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"access-control-allow-origin", b"http://evil.example"),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
        (b"vary", b"Cookie"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-type", b"text/plain"),
    ]})
    await send({"type": "http.response.body", "body": b"ok"})


def call(app, method, origin=None):
    headers = {"Origin": origin} if origin else {}
    return TestClient(app).request(method, "/users", headers=headers)


def raw(r):
    return [(k.decode().lower(), v.decode()) for k, v in r.headers.raw
            if k.lower() not in (b"content-length", b"date", b"server")]


OPEN = CORSMiddleware(backend, [])
LISTED = CORSMiddleware(backend, ["http://localhost:5151"])


def test_preflight_allowed_origin():
    SEEN.clear()
    r = call(LISTED, "OPTIONS", "http://localhost:5151")
    assert r.status_code == 204 and r.content == b"" and SEEN == []
    assert raw(r) == [
        ("vary", "Origin"),
        ("access-control-allow-origin", "http://localhost:5151"),
        ("access-control-allow-credentials", "true"),
        ("vary", "Access-Control-Request-Method"),
        ("vary", "Access-Control-Request-Headers"),
        ("access-control-allow-methods", ALLOW_METHODS),
        ("access-control-allow-headers", ALLOW_HEADERS),
    ]
    assert ALLOW_METHODS == "GET,POST,PUT,DELETE,OPTIONS"
    assert ALLOW_HEADERS == "Origin,Content-Type,Accept,X-CSRF-Token"


def test_options_without_origin_or_disallowed_is_bare_204():
    for origin in (None, "http://other.example"):
        SEEN.clear()
        r = call(LISTED, "OPTIONS", origin)
        assert r.status_code == 204 and raw(r) == [("vary", "Origin")] and SEEN == []


def test_empty_list_reflects_any_origin():
    r = call(OPEN, "GET", "https://anything.example")
    assert r.headers["access-control-allow-origin"] == "https://anything.example"


def test_simple_request_replaces_upstream_cors_headers():
    r = call(LISTED, "GET", "http://localhost:5151")
    headers = raw(r)
    assert headers[:3] == [
        ("vary", "Origin"),
        ("access-control-allow-origin", "http://localhost:5151"),
        ("access-control-allow-credentials", "true"),
    ]
    assert [v for k, v in headers if k == "vary"] == ["Origin", "Cookie"]
    assert [v for k, v in headers if k.startswith("access-control-")] == ["http://localhost:5151", "true"]
    assert [v for k, v in headers if k == "set-cookie"] == ["a=1", "b=2"]
    assert r.content == b"ok"


def test_disallowed_origin_passes_without_cors_headers():
    r = call(LISTED, "POST", "http://other.example")
    assert r.status_code == 200
    assert not [k for k, _ in raw(r) if k.startswith("access-control-")]
    assert r.headers.get_list("vary") == ["Origin", "Cookie"]


def test_no_origin_skips_cors_but_strips_upstream_headers():
    r = call(OPEN, "GET")
    assert not [k for k, _ in raw(r) if k.startswith("access-control-")]


def test_from_env():
    mw = CORSMiddleware.from_env(backend, {"JUNJO_ALLOW_ORIGINS": " http://a.example , ,http://b.example"})
    assert mw.allow_origins == {"http://a.example", "http://b.example"}
    assert parse_origins("") == []
    assert CORSMiddleware.from_env(backend, {}).is_allowed("http://x.example")
    assert not mw.is_allowed("http://A.example")
