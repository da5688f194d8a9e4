"""Edge CORS: Echo v4.13.3 semantics, the policy built from routes.yaml's ``cors:``."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway.edge.cors import CORSMiddleware, CorsPolicy
from gateway.routing.config import RoutesError, parse_config

ALLOW_METHODS = "GET,POST,PUT,DELETE,OPTIONS"
ALLOW_HEADERS = "Origin,Content-Type,Accept,X-CSRF-Token"
# routes.yaml's junjo block (the defaults spelled out); the origins come from the env.
JUNJO = """cors:
  allow_origins_env: JUNJO_ALLOW_ORIGINS
  allow_methods: [GET, POST, PUT, DELETE, OPTIONS]
  allow_headers: [Origin, Content-Type, Accept, X-CSRF-Token]
  allow_credentials: true
  answer_every_options: true
"""


def policy(block: str = JUNJO, origins: str = "") -> CorsPolicy:
    config = parse_config(block + "routes: []\n", environ={"JUNJO_ALLOW_ORIGINS": origins})
    assert config.cors is not None
    return CorsPolicy.from_config(config.cors)

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


OPEN = CORSMiddleware(backend, policy(origins=""))
LISTED = CORSMiddleware(backend, policy(origins="http://localhost:5151"))


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


def test_origins_from_the_named_variable():
    p = policy(origins=" http://a.example , ,http://b.example")
    assert p.allow_origins == {"http://a.example", "http://b.example"}
    assert policy(origins="").is_allowed("http://x.example")  # empty = any origin (the legacy's default)
    assert not p.is_allowed("http://A.example")  # exact match, as Echo's AllowOriginFunc
    assert not p.is_allowed("")


def test_the_defaults_are_the_junjo_policy():
    assert policy("cors:\n  allow_origins_env: JUNJO_ALLOW_ORIGINS\n") == policy()


def test_standard_preflight_only_mode():
    std = CORSMiddleware(backend, policy("cors:\n  allow_origins: [http://localhost:5151]\n"
                                         "  answer_every_options: false\n  allow_credentials: false\n"))
    SEEN.clear()
    r = TestClient(std).request("OPTIONS", "/users", headers={"Origin": "http://localhost:5151",
                                                              "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and SEEN == []
    assert r.headers["access-control-allow-methods"] == ALLOW_METHODS
    assert "access-control-allow-credentials" not in r.headers
    # An OPTIONS that is no preflight reaches the app, with the simple-request headers.
    r = TestClient(std).request("OPTIONS", "/users", headers={"Origin": "http://localhost:5151"})
    assert r.status_code == 200 and SEEN == ["OPTIONS"]
    assert r.headers["access-control-allow-origin"] == "http://localhost:5151"
    r = TestClient(std).request("OPTIONS", "/users")
    assert r.status_code == 200 and SEEN == ["OPTIONS", "OPTIONS"]


def test_empty_allow_headers_echo_the_request_ones():
    p = CORSMiddleware(backend, policy("cors:\n  allow_origins: [http://a.example]\n  allow_headers: []\n"))
    r = TestClient(p).request("OPTIONS", "/x", headers={"Origin": "http://a.example",
                                                        "Access-Control-Request-Method": "PUT",
                                                        "Access-Control-Request-Headers": "x-one, x-two"})
    assert r.headers["access-control-allow-headers"] == "x-one, x-two"


@pytest.mark.parametrize("block,fragment", [
    ("cors:\n  allow_origins: [http://a.example]\n  allow_origins_env: X\n", "not both"),
    ("cors:\n  allow_credentials: true\n", "needs allow_origins"),
    ("cors:\n  allow_origins: ['http://a.example/']\n", "an origin has no path"),
    ("cors:\n  allow_origins: []\n", "must not be empty"),
    ("cors:\n  allow_origins_env: 'NOT A NAME'\n", "name of an environment variable"),
    ("cors:\n  allow_origins: [http://a.example]\n  allow_methods: [FETCH]\n", "unknown HTTP method"),
    ("cors:\n  allow_origins: [http://a.example]\n  answer_every_option: true\n",
     "did you mean 'answer_every_options'"),
])
def test_bad_cors_blocks_are_reported_with_their_line(block, fragment):
    with pytest.raises(RoutesError) as info:
        parse_config(block + "routes: []\n", environ={})
    assert any(fragment in str(p) and p.line >= 1 and str(p).startswith("routes.yaml:")
               for p in info.value.problems), info.value.problems


def test_a_bad_origin_in_the_variable_names_it():
    with pytest.raises(RoutesError) as info:
        parse_config(JUNJO + "routes: []\n", environ={"JUNJO_ALLOW_ORIGINS": "http://ok.example,not an origin"})
    assert [str(p) for p in info.value.problems] == [
        "routes.yaml:2: cors.allow_origins_env: $JUNJO_ALLOW_ORIGINS: not an origin such as "
        "'https://app.example' or 'http://localhost:5153': 'not an origin'"]


def test_the_null_origin_is_never_reflected_with_credentials():
    # Echo reflects it with credentials when the list is empty; the gateway doesn't (issue 14).
    r = call(OPEN, "GET", "null")
    assert r.status_code == 200
    assert not [k for k, _ in raw(r) if k.startswith("access-control-")]
    assert r.headers.get_list("vary") == ["Origin", "Cookie"]
    r = TestClient(OPEN).options("/users", headers={"Origin": "null", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and "access-control-allow-origin" not in r.headers
    assert not policy(origins="http://localhost:5151").is_allowed("null")
    # Without credentials, reflecting it grants nothing a plain fetch couldn't read: Echo's rule stands.
    uncredentialed = policy(JUNJO.replace("allow_credentials: true", "allow_credentials: false"))
    assert uncredentialed.is_allowed("null")


def _warnings(block: str, origins: str | None) -> list[str]:
    from gateway.routing.warnings import config_warnings
    environ = {} if origins is None else {"JUNJO_ALLOW_ORIGINS": origins}
    return [w.code for w in config_warnings(parse_config(block + "routes: []\n", environ=environ))]


def test_an_empty_or_unset_origin_variable_is_warned_about():
    assert _warnings(JUNJO, None) == ["cors_any_origin"]
    assert _warnings(JUNJO, "") == ["cors_any_origin"]
    assert _warnings(JUNJO, " , ") == ["cors_any_origin"]
    assert _warnings(JUNJO, "https://app.example") == []
    assert _warnings("cors:\n  allow_origins: [https://app.example]\n", None) == []
    assert _warnings("", None) == []  # no cors block: the gateway adds no CORS at all


def test_the_warning_says_what_it_means_and_what_to_set():
    from gateway.routing.warnings import config_warnings
    (warning,) = config_warnings(parse_config(JUNJO + "routes: []\n", environ={}))
    assert "$JUNJO_ALLOW_ORIGINS" in warning.detail and "with credentials" in warning.detail
    assert "JUNJO_ALLOW_ORIGINS=https://" in warning.detail
