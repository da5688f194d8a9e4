"""A tiny Echo-like dispatcher: static segments beat ``:param`` segments, a
method miss falls back to another matching route, and misses answer Echo's
``404 {"message":"Not Found"}`` / ``405 {"message":"Method Not Allowed"}``
(with Echo's ``Allow`` header) instead of Starlette's plain-text ones."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from services.common.responses import error_response
from services.registry import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]

# Echo's routeMethods.updateAllowHeader order.
_ALLOW_ORDER = ("CONNECT", "DELETE", "GET", "HEAD", "PATCH", "POST", "PROPFIND", "PUT", "TRACE", "REPORT")


@dataclass(frozen=True)
class EchoRoute:
    pattern: str
    methods: dict[str, Handler]

    @property
    def regex(self) -> re.Pattern[str]:
        parts = []
        for seg in self.pattern.split("/"):
            parts.append(f"(?P<{seg[1:]}>[^/]*)" if seg.startswith(":") else re.escape(seg))
        return re.compile("/".join(parts) + r"\Z")

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
        method, path = scope["method"], scope["path"]
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
