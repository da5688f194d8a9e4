"""How Echo reads a request, Go (the stand-in, real Echo) vs Python, through the gateway.

Three readings every Python feature shares (services/common), each asserted
byte for byte on both sides:

* ``?pretty``: ``c.QueryParams()`` is Go's ``url.ParseQuery`` — keys unescaped,
  ``+`` a space, pairs with a bad escape or a ``;`` dropped, nothing at all
  past 10,000 parameters (services/common/goquery.py);
* the CSRF skipper and the auth middleware compare ``c.Path()``, the template
  of the route that matched, never the request path (services/common/protect.py);
* ``r.Cookies()`` sees no cookie at all past 3,000 (services/common/cookies.py).

The gateways share the stand-in's SQLite file; one routes every family to Go,
the other to Python.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_proc import GatewayProc
from tests.support.parity import EMAIL, go_and_python, signed_in_cookie

FAMILIES = ("/ping", "/sign-in", "/sign-out", "/auth-test", "/csrf", "/users", "/api_keys", "/llm", "/otel")


# Go's own limits (10,000 query parameters, 3,000 cookies) lie beyond the
# gateway's default head limits, which refuse such heads at the edge (414/431,
# README "Limits and timeouts"); these gateways are opened up so both backends'
# answers can be compared.
OPEN_LIMITS = "  request_line: 1048576\n  header_line: 1048576\n  head_size: 2097152\n"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProc, GatewayProc]]:
    with go_and_python(tmp_path_factory.mktemp("parity-reads"), FAMILIES, limits=OPEN_LIMITS) as pair:
        yield pair


@pytest.fixture(scope="module")
def session(gateways) -> str:
    return signed_in_cookie(gateways[0])


def seen(r: httpx.Response) -> dict[str, Any]:
    """What a client can tell apart (cookie values and dates aside)."""
    return {
        "status": r.status_code,
        "content-type": r.headers.get("content-type"),
        "allow": r.headers.get("allow"),
        "set-cookie": sorted(c.split("=", 1)[0] for c in r.headers.get_list("set-cookie")),
        "body": r.content,
    }


def both(gateways, method: str, target: str, headers: list[tuple[str, str]] | None = None,
         body: bytes = b"") -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for gw in gateways:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            out.append(seen(client.request(method, target, headers=headers or [], content=body)))
    return out[0], out[1]


# --- ?pretty ---------------------------------------------------------------------------------

PRETTY_QUERIES = [
    ("pretty", True), ("pretty=", True), ("pretty=1", True), ("x=1&pretty", True), ("&&pretty&&", True),
    ("pretty=a=b", True), ("pretty=+%2B", True), ("%zz&pretty", True), ("pretty&x=%zz", True),
    ("%70retty", True), ("pr%65tty=1", True), ("p%72etty=%41", True),  # keys are unescaped
    ("pretty+", False), ("+pretty", False), ("pretty%20", False),  # '+' is a space
    ("PRETTY", False), ("=pretty", False), ("pretty%3D1", False), ("pretty%00", False),
    ("pretty=%zz", False), ("pretty=%", False), ("pretty%", False),  # a bad escape drops the pair
    ("pretty;x", False), ("pretty=a;b", False),  # so does a ';'
    ("x=1&" * 9998 + "pretty", True), ("x=1&" * 10000 + "pretty", False),  # 10,000 parameters at most
]


@pytest.mark.parametrize("query,indented", PRETTY_QUERIES, ids=[q[:24] for q, _ in PRETTY_QUERIES])
def test_pretty_is_read_as_go_parses_the_query(gateways, session, query, indented):
    for path in ("/users/db-has-users", "/otel/nope", "/api_keys/x"):
        go, py = both(gateways, "GET", f"{path}?{query}", headers=[("Cookie", session)])
        assert py == go, path
        assert (b"\n  " in go["body"]) is indented, (path, go["body"])


# --- c.Path(): the auth and CSRF decisions -----------------------------------------------------

@pytest.mark.parametrize("method,path,jar", [
    ("DELETE", "/users/db%2Dhas-users", "csrf=c"),  # matches /users/:id: not public (Go 401)
    ("DELETE", "/users/db-has-users", "csrf=c"),  # the static route has no DELETE: /users/:id again
    ("GET", "/users/db%2Dhas-users", "csrf=c"),  # a 405 of /users/:id: the session is checked first
    ("GET", "/users/create%2Dfirst-user", None),
    ("POST", "/users/db-has-users", "csrf=c"),  # a 405 of the public route: no session needed
    ("POST", "/users/create%2Dfirst-user", "csrf=c"),
    ("POST", "/sign%2Din", None),  # no route: c.Path() is "", so CSRF is not skipped
    ("POST", "/sign%2Din", "csrf=c"),
    ("POST", "/sign-in/", None),
    ("GET", "/csrf%2F", None),
    ("GET", "/users/db%2dhas-users", None),
])
def test_auth_and_csrf_decide_on_the_matched_route(gateways, method, path, jar):
    headers = [("Cookie", jar)] if jar else []
    go, py = both(gateways, method, path, headers=headers, body=b"{}")
    assert py == go
    assert go["status"] in (400, 401, 404, 405)


@pytest.mark.parametrize("path,status", [("/users/db%2Dhas-users", 400), ("/users/db-has-users", 400)])
def test_with_a_session_the_handler_answers(gateways, session, path, status):
    go, py = both(gateways, "DELETE", path, headers=[("Cookie", session + "; csrf=c")])
    assert py == go and go["status"] == status
    assert go["body"] == b'{"message":"Invalid user ID format"}\n'


# --- r.Cookies(): 3,000 at most ----------------------------------------------------------------

def _jar(session: str, total: int) -> str:
    return "; ".join([session, "csrf=c", *(f"c{i}=1" for i in range(total - 2))])


@pytest.mark.parametrize("total,status", [(3000, 409), (3001, 400)])
def test_a_write_past_3000_cookies_loses_its_csrf_cookie(gateways, session, total, status):
    body = ('{"email":"%s","password":"x"}' % EMAIL).encode()
    go, py = both(gateways, "POST", "/users", body=body,
                  headers=[("Cookie", _jar(session, total)), ("Content-Type", "application/json")])
    assert py == go and go["status"] == status
    if status == 400:
        assert go["body"] == b'{"message":"missing value in cookies"}\n'


@pytest.mark.parametrize("total,status", [(3000, 200), (3001, 401)])
def test_a_read_past_3000_cookies_loses_its_session(gateways, session, total, status):
    go, py = both(gateways, "GET", "/auth-test", headers=[("Cookie", _jar(session, total))])
    assert py == go and go["status"] == status


# --- form bodies: ParseQuery's error -----------------------------------------------------------

@pytest.mark.parametrize("body,query", [
    (b"a=%zz&b;c", ""),  # a ';' anywhere overrides an earlier escape error
    (b"a=%\xff1", ""),  # strconv.Quote writes the invalid byte as \xff
    (b"&".join([b"a=1"] * 10001), ""),  # too many parameters
    (b"&".join([b"a=1"] * 10000), ""),
    (b"name=a", "x=%zz"), (b"a%4=1", ""), (b"k%=v", ""),
])
def test_form_bind_errors_are_parse_querys(gateways, session, body, query):
    target = "/api_keys" + (f"?{query}" if query else "")
    go, py = both(gateways, "POST", target, body=body,
                  headers=[("Cookie", session + "; csrf=c"), ("Content-Type", "application/x-www-form-urlencoded")])
    assert py == go and go["status"] == 400


@pytest.mark.parametrize("path", ["/sign-in", "/users", "/users/create-first-user", "/llm/generate"])
def test_every_feature_binds_the_query_of_a_form_post(gateways, session, path):
    # r.ParseForm reads the URL query too: a bad escape there fails the bind.
    go, py = both(gateways, "POST", path + "?x=%zz", body=b"email=a",
                  headers=[("Cookie", session + "; csrf=c"), ("Content-Type", "application/x-www-form-urlencoded")])
    assert py == go and go["status"] == 400
    assert b'invalid URL escape \\"%zz\\"' in go["body"]
