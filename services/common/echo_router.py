"""A tiny Echo-like dispatcher shared by every feature module.

Echo v4.13.3 behaviours a drop-in must copy (router.go's ``Find``, checked
against the Go stand-in):

* at each segment a static part beats a ``:param``, with backtracking; a
  method miss falls back to another matching route; misses answer Echo's
  ``404 {"message":"Not Found"}`` / ``405 {"message":"Method Not Allowed"}``
  with Echo's ``Allow`` header;
* **raw or decoded**: Go keeps ``URL.RawPath`` only when the request's escaping
  differs from Go's default escaping of the decoded path (``%41`` for ``A``,
  ``%2F``), and Echo then routes on the *raw* path, so a param is the
  still-escaped text (:func:`echo_path`); a route may ask for its params
  percent-decoded (``unescape=True``, what ``url.PathUnescape`` on ``c.Param``
  gives);
* **params**: a param in the middle of a route takes up to the next ``/`` and
  may be empty (``/otel/service//root-spans`` reaches the handler); a trailing
  param that no other route extends takes the rest, ``/`` included, and is
  never empty (``/api_keys/k/extra`` → ``k/extra``, ``/api_keys/`` → 404);
* **c.Path()**: the template of the route that matched, also for a 405, and
  ``""`` when nothing matched — what the legacy's CSRF skipper and auth
  middleware compare with (:meth:`EchoRouter.route_path`).
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, unquote, unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.common.responses import error_response

Handler = Callable[[Request], Awaitable[Response]]

# Echo's routeMethods.updateAllowHeader order.
_ALLOW_ORDER = ("CONNECT", "DELETE", "GET", "HEAD", "PATCH", "POST", "PROPFIND", "PUT", "TRACE", "REPORT")


@dataclass(frozen=True)
class EchoRoute:
    pattern: str
    methods: dict[str, Handler]
    # Percent-decode params matched on the raw path (Echo itself leaves them escaped).
    unescape: bool = False

    @property
    def is_static(self) -> bool:
        return ":" not in self.pattern

    @property
    def shape(self) -> str:
        """The pattern with param names dropped: Echo's tree node for it."""
        return re.sub(r":[^/]*", ":", self.pattern)

    def priority(self) -> list[int]:
        """Sort key: at the first segment where two routes differ, static first."""
        return [1 if seg.startswith(":") else 0 for seg in self.pattern.split("/")]

    def regex(self, leaf: bool) -> re.Pattern[str]:
        segments = self.pattern.split("/")
        parts = []
        for i, seg in enumerate(segments):
            if not seg.startswith(":"):
                parts.append(re.escape(seg))
            elif i < len(segments) - 1:
                parts.append(f"(?P<{seg[1:]}>[^/]*)")  # middle param: up to the next '/', maybe empty
            elif leaf:
                parts.append(f"(?P<{seg[1:]}>.+)")  # a trailing leaf param takes the rest
            else:
                parts.append(f"(?P<{seg[1:]}>[^/]+)")
        return re.compile("/".join(parts) + r"\Z", re.DOTALL)

    def allow_header(self) -> str:
        methods = [m for m in _ALLOW_ORDER if m in self.methods]
        return ", ".join(["OPTIONS", *methods])


@dataclass(frozen=True)
class Match:
    """What Echo's router found for one request."""
    route_path: str  # c.Path(): the matched template (405 included), "" when nothing matched
    handler: Handler | None = None
    params: dict[str, str] = field(default_factory=dict)
    allow: str | None = None  # set for a 405


class RoutedApp(Protocol):
    """An app that can say which route template a request matches (c.Path())."""

    def route_path(self, scope: Scope) -> str: ...


class EchoRouter:
    def __init__(self, routes: list[EchoRoute]) -> None:
        shapes = [r.shape for r in routes]
        compiled = []
        for route in sorted(routes, key=EchoRoute.priority):
            # A trailing param is a leaf unless another route continues below it.
            leaf = not any(s.startswith(route.shape + "/") for s in shapes)
            compiled.append((route, route.regex(leaf)))
        self._routes = compiled

    def find(self, method: str, scope: Scope) -> Match:
        path, raw = _routing_path(scope)
        first: tuple[EchoRoute, dict[str, str]] | None = None
        for route, regex in self._routes:
            found = regex.match(path)
            if not found:
                continue
            params = found.groupdict()
            if raw and route.unescape:
                params = {k: _unescape(v) for k, v in params.items()}
            handler = route.methods.get(method)
            if handler is not None:
                return Match(route.pattern, handler, params)
            first = first or (route, params)
        if first is None:
            return Match("")
        return Match(first[0].pattern, allow=first[0].allow_header())

    def route_path(self, scope: Scope) -> str:
        return self.find(scope["method"], scope).route_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        match = self.find(method, scope)
        if match.handler is not None:
            scope = dict(scope)
            scope["path_params"] = match.params
            response = await match.handler(Request(scope, receive))
        elif match.allow is None:
            response = error_response(404, "Not Found", method=method)
        else:
            response = error_response(405, "Method Not Allowed", method=method,
                                      headers=[("Allow", match.allow)])
        await response(scope, receive, send)


def _unescape(text: str) -> str:
    """A raw path param percent-decoded (UTF-8; undecodable bytes as U+FFFD)."""
    raw = text.encode("latin-1")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return unquote(raw.decode("latin-1"), errors="replace")


# Bytes Go's url.escape(..., encodePath) leaves alone besides alphanumerics and -_.~
_GO_PATH_SAFE = "$&+,/:;=@"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _valid_escapes(raw: bytes) -> bool:
    i = raw.find(b"%")
    while i != -1:
        if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            return False
        i = raw.find(b"%", i + 3)
    return True


def _routing_path(scope: Scope) -> tuple[str, bool]:
    """(the path Echo routes on, whether it is the raw path)."""
    raw: bytes = scope.get("raw_path") or b""
    decoded: str = scope["path"]
    if not raw:
        return decoded, False
    raw = raw.split(b"?", 1)[0]
    if not _valid_escapes(raw):
        return raw.decode("latin-1"), True
    plain = unquote_to_bytes(raw)
    if quote(plain, safe=_GO_PATH_SAFE).encode("ascii") == raw:
        return plain.decode("utf-8", errors="replace"), False
    return raw.decode("latin-1"), True


def echo_path(scope: Scope) -> str:
    """The path Echo routes on: the decoded path, or the raw one when Go keeps RawPath."""
    return _routing_path(scope)[0]
