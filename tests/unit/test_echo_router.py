"""The shared Echo router's matching, case by case as Echo v4.13.3 answers them.

Each expectation was read from a real Echo (the legacy's version) serving the
same routes; the /otel and /users parity tests check the same rules on the wire.
"""
from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from services.common.echo_router import EchoRoute, EchoRouter


async def _h(request: Request) -> Response:
    return Response()


ROUTER = EchoRouter([
    EchoRoute("/x/:a", {"GET": _h}), EchoRoute("/x/:a/b", {"GET": _h}),
    EchoRoute("/y/:a/c", {"GET": _h}), EchoRoute("/y/b/:z", {"GET": _h}),
    EchoRoute("/leaf/:k", {"GET": _h}), EchoRoute("/mid/:m/end", {"GET": _h}),
    EchoRoute("/esc/:e", {"GET": _h}, unescape=True),
])


def find(path: str, raw: bytes | None = None, method: str = "GET"):
    scope = {"method": method, "path": path, "raw_path": raw if raw is not None else path.encode()}
    return ROUTER.find(method, scope)


@pytest.mark.parametrize("path,route_path,params", [
    ("/x/1", "/x/:a", {"a": "1"}),
    ("/x/1/2", "", {}),  # /x/:a has a child: its param stops at '/', nothing matches
    ("/x/1/b", "/x/:a/b", {"a": "1"}),
    ("/x/", "", {}),  # a trailing param is never empty
    ("/y/b/c", "/y/b/:z", {"z": "c"}),  # static beats param at the first segment they differ
    ("/y/q/c", "/y/:a/c", {"a": "q"}),
    ("/leaf/a/b", "/leaf/:k", {"k": "a/b"}),  # a leaf param takes the rest
    ("/leaf/", "", {}),
    ("/mid//end", "/mid/:m/end", {"m": ""}),  # a middle param may be empty
])
def test_matching(path, route_path, params):
    match = find(path)
    assert (match.route_path, match.params if match.handler else {}) == (route_path, params)


def test_405_keeps_the_template_and_allow():
    match = find("/leaf/k", method="POST")
    assert (match.route_path, match.handler, match.allow) == ("/leaf/:k", None, "OPTIONS, GET")


def test_params_on_the_raw_path_are_unescaped_only_when_asked():
    assert find("/leaf/a/b", b"/leaf/a%2Fb").params == {"k": "a%2Fb"}  # Echo: still escaped
    assert find("/esc/a/b", b"/esc/a%2Fb").params == {"e": "a/b"}
    assert find("/esc/\u00e9", b"/esc/%c3%a9").params == {"e": "\u00e9"}
    assert find("/esc/a%41", b"/esc/a%2541").params == {"e": "a%41"}  # decoded path: never twice
