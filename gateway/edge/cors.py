"""CORS at the edge, exactly as the legacy Echo CORS middleware (``e.Pre``).

Legacy config: ``AllowOriginFunc`` = exact match in ``JUNJO_ALLOW_ORIGINS``
(any origin when the list is empty), ``AllowCredentials: true``, methods
GET,POST,PUT,DELETE,OPTIONS, headers Origin,Content-Type,Accept,X-CSRF-Token.
Echo v4.13.3 semantics reproduced here:

* every response gets ``Vary: Origin`` (added before anything else runs);
* every ``OPTIONS`` is answered here with 204 and never reaches the app:
  with an allowed ``Origin`` it also carries Allow-Origin (the origin echoed),
  Allow-Credentials, ``Vary: Access-Control-Request-Method``,
  ``Vary: Access-Control-Request-Headers``, Allow-Methods and Allow-Headers;
  without ``Origin`` or with a disallowed one, only ``Vary: Origin``;
* other methods go to the app; with an allowed origin the response gets
  Allow-Origin + Allow-Credentials. A disallowed origin is not blocked, it just
  gets no CORS headers.

Because the gateway is the one CORS layer, any ``Access-Control-*`` header and
any ``Vary: Origin`` line the wrapped app set (the forwarded Go backend runs its
own CORS) are removed before ours are added, so none is duplicated. Headers are
handled as raw lists (repeated ``Set-Cookie`` survive).
"""
from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, Mapping, MutableMapping, Sequence

from gateway.httpdate import http_date

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_METHODS = "GET,POST,PUT,DELETE,OPTIONS"
ALLOW_HEADERS = "Origin,Content-Type,Accept,X-CSRF-Token"


def parse_origins(value: str) -> list[str]:
    """``JUNJO_ALLOW_ORIGINS``: comma-separated, blanks ignored; empty = any origin."""
    return [o.strip() for o in value.split(",") if o.strip()]


class CORSMiddleware:
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.allow_origins = frozenset(allow_origins)

    @classmethod
    def from_env(cls, app: ASGIApp, environ: Mapping[str, str] | None = None) -> "CORSMiddleware":
        env = os.environ if environ is None else environ
        return cls(app, parse_origins(env.get("JUNJO_ALLOW_ORIGINS", "")))

    def is_allowed(self, origin: str) -> bool:
        return bool(origin) and (not self.allow_origins or origin in self.allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"origin":
                origin = value.decode("latin-1")
                break  # Go's Header.Get: the first value
        allowed = self.is_allowed(origin)
        ours: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            ours += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
            ]

        if scope["method"] == "OPTIONS":
            if allowed:
                ours += [
                    (b"vary", b"Access-Control-Request-Method"),
                    (b"vary", b"Access-Control-Request-Headers"),
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                ]
            # The gateway answers the preflight itself: it owes the Date too.
            ours.append((b"date", http_date()))
            await send({"type": "http.response.start", "status": 204, "headers": ours})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = ours + [
                    (k, v) for k, v in message.get("headers", ())
                    if not _is_cors_header(k, v)
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _is_cors_header(name: bytes, value: bytes) -> bool:
    lname = name.lower()
    if lname.startswith(b"access-control-"):
        return True
    return lname == b"vary" and value.strip().lower() == b"origin"
