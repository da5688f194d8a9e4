"""Readiness follows the table, and `default: python` answers unknown paths as Go does.

Real gateway processes on loopback; the Go stand-in (Echo, the legacy's own
middleware libraries) is the oracle for what an unknown path answers.
"""
from __future__ import annotations

import httpx
import pytest

from services.common.session_codec import SessionCodec
from tests.support.browser_jar import set_cookies
from tests.support.gateway_proc import routes_yaml
from tests.support.standin import refused_port

SESSION = SessionCodec([b"test-secret"]).encode("ada@example.com")  # the stand-in's default secret
ALL_PYTHON = "".join(f"  - prefix: {p}\n    to: python\n" for p in ("/ping", "/users", "/api_keys", "/otel"))


def _ready(gw) -> tuple[int, dict]:
    r = gw.admin_get("/_gateway/ready")  # the token shows what was asked
    return r.status_code, r.json()


@pytest.mark.parametrize("edit", [
    "default: go",
    "/users: go",
    "/users: shadow",
    "/users: canary",
])
def test_ready_needs_go_only_while_the_table_sends_something_there(gateway_factory, edit, dead_url):
    dead = dead_url
    retired = routes_yaml(dead, ALL_PYTHON, default="python")
    gw = gateway_factory(retired)
    status, body = _ready(gw)
    assert (status, body["ready"]) == (200, True), body

    if edit == "default: go":
        needs_go = routes_yaml(dead, ALL_PYTHON, default="go")
    else:
        state = edit.split(": ")[1]
        extra = "    percent: 10\n" if state == "canary" else ""
        needs_go = routes_yaml(dead, ALL_PYTHON.replace("/users\n    to: python\n", f"/users\n    to: {state}\n{extra}"),
                               default="python")
    gw.apply_config(needs_go)
    status, body = _ready(gw)
    assert (status, body["ready"]) == (503, False), body
    assert body["legacy"].startswith(f"GET {dead}/ping failed")

    gw.apply_config(retired)  # rolled forward again: ready without Go
    assert _ready(gw)[0] == 200
    # Liveness never depended on Go.
    assert httpx.get(gw.url + "/_gateway/health", timeout=10).json()["status"] == "ok"


def test_ready_asks_go_when_a_route_still_uses_it(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /users\n    to: go\n", default="python"))
    status, body = _ready(gw)
    assert (status, body) == (200, {"ready": True, "legacy": f"GET {standin.url}/ping answered 200"})


# ---- unknown paths: the Python default answers as the legacy does --------------------

CASES = {
    "get-anonymous": ("GET", "/nope", {}),
    "get-signed-in": ("GET", "/nope", {"session": SESSION}),
    "get-root-signed-in": ("GET", "/", {"session": SESSION}),
    "sibling-of-a-route": ("GET", "/users-admin", {"session": SESSION}),
    "deep-signed-in": ("GET", "/a/b/c", {"session": SESSION}),
    "pretty": ("GET", "/nope?pretty", {"session": SESSION}),
    "bad-session": ("GET", "/nope", {"session": "not-a-gorilla-value"}),
    "post-without-csrf": ("POST", "/nope", {"session": SESSION}),
    "post-anonymous": ("POST", "/nope", {"csrf": "t"}),
    "delete-signed-in": ("DELETE", "/nope/7", {"csrf": "t", "session": SESSION}),
    "patch-signed-in": ("PATCH", "/nope", {"csrf": "t", "session": SESSION}),
    "head-signed-in": ("HEAD", "/nope", {"session": SESSION}),
}


def _answer(r: httpx.Response) -> tuple:
    cookies = [(c.name, list(c.attrs)) for c in set_cookies(r)]  # values differ by design (tokens, dates)
    return r.status_code, r.headers.get("content-type"), r.content, cookies, r.headers.get("vary")


@pytest.fixture(scope="module")
def python_default(tmp_path_factory):
    from tests.support.gateway_proc import start_gateway

    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}"
        gw = start_gateway(routes_yaml(dead, ALL_PYTHON, default="python"), tmp_path_factory.mktemp("default-python"))
        yield gw
        gw.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_unknown_paths_answer_like_go(standin, python_default, case):
    method, path, cookies = CASES[case]
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    go = httpx.request(method, standin.url + path, headers=header, timeout=10)
    py = httpx.request(method, python_default.url + path, headers=header, timeout=10)
    assert go.status_code in (400, 401, 404)
    assert _answer(py) == _answer(go)
