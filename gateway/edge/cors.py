"""CORS at the edge: a generic policy, given as data by routes.yaml's ``cors:`` block.

Like Starlette's ``CORSMiddleware``, the policy is constructor data and no
environment is read here (``cors.allow_origins_env`` is resolved when
routes.yaml is loaded). The gateway compiles one :class:`CorsPolicy` per
route table, so a request answers CORS by the table it is routed by and a
reload changes the policy; without a ``cors:`` block the gateway adds no CORS
at all and the backends' own headers pass through untouched.

The semantics are Echo v4.13.3's CORS middleware (``e.Pre``), which the legacy
junjo-server runs with ``AllowOriginFunc`` = exact match in its list (any
origin when the list is empty) and ``AllowCredentials: true``:

* every response gets ``Vary: Origin`` (added before anything else runs);
* an allowed ``Origin`` (exact match; any non-empty origin when the list is
  empty) gets Allow-Origin (the origin echoed) and, with ``allow_credentials``,
  Allow-Credentials; a disallowed origin is not blocked, it just gets no
  CORS headers;
* one departure from Echo (issue 14): the ``null`` origin is never allowed
  while ``allow_credentials`` is on. Sandboxed iframes, ``file:`` and
  ``data:`` documents and some cross-origin redirects all send ``null``, so
  reflecting it with credentials would let any such document make
  credentialed calls; it can't be listed (it is no ``scheme://host``), so it
  only ever came in through the empty list's "any origin";
* a preflight is answered here with 204 and never reaches the app: with an
  allowed origin it also carries ``Vary: Access-Control-Request-Method``,
  ``Vary: Access-Control-Request-Headers``, Allow-Methods and Allow-Headers
  (the request's Access-Control-Request-Headers echoed when ``allow_headers``
  is empty); without ``Origin`` or with a disallowed one, only
  ``Vary: Origin``.

What counts as a preflight: with ``answer_every_options: true`` (Echo), every
``OPTIONS``; with ``false`` (the standard), only ``OPTIONS`` carrying ``Origin``
and ``Access-Control-Request-Method`` — any other OPTIONS goes to the app and
gets the simple-request headers.

Because the gateway is then the one CORS layer, any ``Access-Control-*``
header and any ``Vary: Origin`` line the wrapped app set (the forwarded Go
backend runs its own CORS) are removed before ours are added, so none is
duplicated. Headers are handled as raw lists (repeated ``Set-Cookie`` survive).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.httpdate import http_date

if TYPE_CHECKING:
    from gateway.routing.models import CorsConfig


NULL_ORIGIN = "null"  # what opaque origins send (sandboxed iframes, file: pages, some redirects)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: frozenset[str] = frozenset()  # empty = any origin is reflected
    allow_methods: bytes = b"GET,POST,PUT,DELETE,OPTIONS"
    allow_headers: bytes = b"Origin,Content-Type,Accept,X-CSRF-Token"  # b"" = echo the request's
    allow_credentials: bool = True
    answer_every_options: bool = True

    @classmethod
    def from_config(cls, cors: CorsConfig) -> CorsPolicy:
        return cls(
            allow_origins=frozenset(cors.origins),
            allow_methods=",".join(cors.allow_methods).encode("latin-1"),
            allow_headers=",".join(cors.allow_headers).encode("latin-1"),
            allow_credentials=cors.allow_credentials,
            answer_every_options=cors.answer_every_options,
        )

    def is_allowed(self, origin: str) -> bool:
        if not origin or (origin == NULL_ORIGIN and self.allow_credentials):
            return False
        return not self.allow_origins or origin in self.allow_origins

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Answer a preflight, or run ``app`` with this policy's headers on its answer."""
        origin = request_method = request_headers = b""
        for name, value in scope.get("headers", ()):
            name = name.lower()
            # Go's Header.Get: the first value of each.
            if name == b"origin" and not origin:
                origin = value
            elif name == b"access-control-request-method" and not request_method:
                request_method = value
            elif name == b"access-control-request-headers" and not request_headers:
                request_headers = value
        allowed = self.is_allowed(origin.decode("latin-1"))
        ours: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            ours.append((b"access-control-allow-origin", origin))
            if self.allow_credentials:
                ours.append((b"access-control-allow-credentials", b"true"))

        if scope["method"] == "OPTIONS" and (self.answer_every_options or (origin and request_method)):
            if allowed:
                ours += [
                    (b"vary", b"Access-Control-Request-Method"),
                    (b"vary", b"Access-Control-Request-Headers"),
                    (b"access-control-allow-methods", self.allow_methods),
                ]
                headers = self.allow_headers or request_headers
                if headers:
                    ours.append((b"access-control-allow-headers", headers))
            # The gateway answers the preflight itself: it owes the Date too.
            ours.append((b"date", http_date()))
            await send({"type": "http.response.start", "status": 204, "headers": ours})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = _with_ours(ours, message.get("headers", ()))
            await send(message)

        await app(scope, receive, send_with_cors)


class CORSMiddleware:
    """ASGI middleware applying one fixed policy (the gateway itself uses the
    live table's policy per request; this wraps any other app)."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.policy.handle(scope, receive, send, self.app)


def _with_ours(ours: list[tuple[bytes, bytes]], headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``ours``, then the app's headers minus its CORS ones (``Access-Control-*``
    and ``Vary: Origin``). One loop with the test inline: this runs for every
    response, and a function call per header added up."""
    out = list(ours)
    for name, value in headers:
        lname = name.lower()
        if lname.startswith(b"access-control-") or (lname == b"vary" and value.strip().lower() == b"origin"):
            continue
        out.append((name, value))
    return out
