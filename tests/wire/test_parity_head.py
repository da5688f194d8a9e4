"""HEAD on the legacy's routes: Go (the stand-in, real Echo) vs Python, through the gateway.

Echo registers no HEAD routes, so ``HEAD`` on a GET route is a 405 with Echo's
``Allow`` (``OPTIONS, GET``), and Echo's error handler answers HEAD with
``c.NoContent``: no body, no Content-Type, no Content-Length. The middleware
still runs first: the csrf cookie is set, and a route that needs a session
answers 401 without one. Every Python feature must answer the same, on the wire.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_proc import GatewayProc
from tests.support.parity import go_and_python, signed_in_cookie

FAMILIES = ("/ping", "/sign-in", "/sign-out", "/auth-test", "/csrf", "/users", "/api_keys", "/llm", "/otel")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProc, GatewayProc]]:
    with go_and_python(tmp_path_factory.mktemp("parity-head"), FAMILIES) as pair:
        yield pair


@pytest.fixture(scope="module")
def session(gateways) -> str:
    return signed_in_cookie(gateways[0])


def wire(r: httpx.Response) -> dict[str, Any]:
    """What a client of a HEAD answer can see, cookie values and dates aside."""
    def cookie(header: str) -> tuple[str, ...]:
        name = header.split("=", 1)[0]
        attrs = [a.strip() for a in header.split(";")[1:] if not a.strip().startswith("Expires=")]
        return (name, *attrs)

    return {
        "status": r.status_code,
        "allow": r.headers.get("allow"),
        "content-type": r.headers.get("content-type"),
        "content-length": r.headers.get("content-length"),
        "vary": sorted(v.strip() for line in r.headers.get_list("vary") for v in line.split(",")),
        "set-cookie": sorted(cookie(c) for c in r.headers.get_list("set-cookie")),
        "body": r.content,
    }


def head_both(gateways, path: str, cookie: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"Cookie": cookie} if cookie else {}
    go, py = (wire(httpx.head(gw.url + path, headers=headers)) for gw in gateways)
    return go, py


GET_ROUTES = [
    "/ping", "/auth-test", "/csrf", "/users", "/users/db-has-users", "/api_keys",
    "/otel/span-service-names", "/otel/service/svc/root-spans", "/otel/service/svc/root-spans-filtered",
    "/otel/trace/0123/nested-spans", "/otel/trace/0123/span/4567", "/otel/spans/type/workflow/svc",
]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_on_a_get_route_is_echos_405_on_both(gateways, session, path):
    go, py = head_both(gateways, path, f"{session}; csrf=t")
    assert go["status"] == 405 and go["allow"].startswith("OPTIONS, GET")
    assert go["body"] == b"" and go["content-type"] is None and go["content-length"] is None
    assert py == go


@pytest.mark.parametrize("path,allow", [
    ("/sign-in", "OPTIONS, POST"), ("/sign-out", "OPTIONS, POST"), ("/llm/generate", "OPTIONS, POST"),
    ("/users/7", "OPTIONS, DELETE"), ("/api_keys/somekey", "OPTIONS, DELETE"),
])
def test_head_on_other_routes_is_405_with_their_allow(gateways, session, path, allow):
    go, py = head_both(gateways, path, f"{session}; csrf=t")
    assert (go["status"], go["allow"], go["body"]) == (405, allow, b"")
    assert py == go


@pytest.mark.parametrize("path", ["/ping", "/csrf", "/users/db-has-users", "/auth-test", "/api_keys",
                                  "/otel/span-service-names", "/users/nope/more"])
def test_head_without_a_session_runs_the_middleware_first(gateways, path):
    """Public routes still answer 405 (and get a csrf cookie); the others 401, empty."""
    go, py = head_both(gateways, path, None)
    assert go["status"] in (401, 405) and go["body"] == b""
    assert [c[0] for c in go["set-cookie"]] == ["csrf"]
    assert py == go


def test_head_on_an_unknown_path_is_an_empty_404(gateways, session):
    go, py = head_both(gateways, "/otel/no/such/route", f"{session}; csrf=t")
    assert (go["status"], go["body"], go["content-length"]) == (404, b"", None)
    assert py == go


def test_get_ping_is_the_same_on_both(gateways):
    """/ping goes through the legacy's CSRF middleware too: a csrf cookie and Vary: Cookie."""
    go, py = (wire(httpx.get(gw.url + "/ping")) for gw in gateways)
    assert (go["status"], go["body"], go["content-type"]) == (200, b"pong", "text/plain; charset=UTF-8")
    assert "Cookie" in go["vary"]
    assert py == go
