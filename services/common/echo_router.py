"""A tiny Echo-like dispatcher shared by every feature module.

Echo v4.13.3 behaviours a drop-in must copy (checked against the Go stand-in):

* static segments beat ``:param`` segments; a method miss falls back to another
  matching route; misses answer Echo's ``404 {"message":"Not Found"}`` /
  ``405 {"message":"Method Not Allowed"}`` with Echo's ``Allow`` header;
* **raw or decoded**: Go keeps ``URL.RawPath`` only when the request's escaping
  differs from Go's default escaping of the decoded path (``%41`` for ``A``,
  ``%2F``), and Echo then routes on the *raw* path, so a param is the
  still-escaped text (:func:`echo_path`);
* **a trailing param takes the rest**: ``/api_keys/:key`` matches
  ``/api_keys/k/extra`` with ``key = "k/extra"``, never the empty string
  (``/api_keys/`` is a 404).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable

from urllib.parse import quote, unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from services.common.responses import error_response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]

# Echo's routeMethods.updateAllowHeader order.
_ALLOW_ORDER = ("CONNECT", "DELETE", "GET", "HEAD", "PATCH", "POST", "PROPFIND", "PUT", "TRACE", "REPORT")


@dataclass(frozen=True)
class EchoRoute:
    pattern: str
    methods: dict[str, Handler]

    @property
    def regex(self) -> re.Pattern[str]:
        segments = self.pattern.split("/")
        parts = []
        for i, seg in enumerate(segments):
            if not seg.startswith(":"):
                parts.append(re.escape(seg))
            elif i == len(segments) - 1:
                parts.append(f"(?P<{seg[1:]}>.+)")  # a trailing param takes the rest
            else:
                parts.append(f"(?P<{seg[1:]}>[^/]+)")
        return re.compile("/".join(parts) + r"\Z", re.DOTALL)

    @property
    def is_static(self) -> bool:
        return ":" not in self.pattern

    def allow_header(self) -> str:
        methods = [m for m in _ALLOW_ORDER if m in self.methods]
        return ", ".join(["OPTIONS", *methods])


class EchoRouter:
    def __init__(self, routes: list[EchoRoute]) -> None:
        # static routes are tried first, as Echo's radix tree prefers them
        self._routes = [(r, r.regex) for r in sorted(routes, key=lambda r: not r.is_static)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], echo_path(scope)
        first_match: EchoRoute | None = None
        for route, regex in self._routes:
            found = regex.match(path)
            if not found:
                continue
            first_match = first_match or route
            handler = route.methods.get(method)
            if handler is not None:
                scope = dict(scope)
                scope["path_params"] = found.groupdict()
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        if first_match is None:
            response = error_response(404, "Not Found", method=method)
        else:
            response = error_response(
                405, "Method Not Allowed", method=method,
                headers=[("Allow", first_match.allow_header())],
            )
        await response(scope, receive, send)


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


def echo_path(scope: Scope) -> str:
    """The path Echo routes on: the decoded path, or the raw one when Go keeps RawPath."""
    raw: bytes = scope.get("raw_path") or b""
    decoded: str = scope["path"]
    if not raw:
        return decoded
    raw = raw.split(b"?", 1)[0]
    if not _valid_escapes(raw):
        return raw.decode("latin-1")
    plain = unquote_to_bytes(raw)
    if quote(plain, safe=_GO_PATH_SAFE).encode("ascii") == raw:
        return plain.decode("utf-8", errors="replace")
    return raw.decode("latin-1")
