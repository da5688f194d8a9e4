"""The legacy middleware chain (CSRF, then Auth) for Python feature modules.

Every feature wraps its ASGI app once::

    SERVICE = Service("users", ("/users",), protect(router))

and gets the Go backend's semantics (contract, "Middleware order" §3–4):

Both decisions compare Echo's ``c.Path()``: the *template* of the route the
request matched (``/users/:id``), ``""`` when none did — never the request
path. So ``DELETE /users/db-has-users`` (or ``/users/db%2Dhas-users``) matches
``/users/:id`` and needs a session, and ``/sign%2Din`` (no route) is not
skipped by CSRF. The wrapped app tells its templates when it is an
:class:`~services.common.echo_router.EchoRouter`; for any other app the path
Echo routes on (:func:`~services.common.echo_router.echo_path`) stands in,
which is the template whenever a static route matches.

* CSRF — skipped for ``OPTIONS`` and ``/sign-in``. On POST/PUT/PATCH/DELETE
  (any non-safe method) a ``csrf`` cookie must be present, any value; without
  it: 400 ``{"message":"missing value in cookies"}``, or 403
  ``{"message":"invalid csrf token"}`` when an ``X-CSRF-Token`` header was sent
  (Echo's extractor order). Then every non-skipped response, including the
  401 below, carries ``Set-Cookie: csrf=<existing value or a new token>``
  and ``Vary: Cookie``. The token is in ``scope["state"]["csrf_token"]``.
* Auth — public paths are ``PUBLIC_PATHS``; everything else needs a ``session``
  cookie that decodes (``SessionCodec``) to a string ``userEmail``, else 401
  ``{"message":"Unauthorized: No valid session"}``. The email is in
  ``scope["state"]["user_email"]`` (``request.state.user_email``).

Plain ASGI (no BaseHTTPMiddleware); headers stay a raw list.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cookies import get_cookie
from .csrf import COOKIE_NAME as CSRF_COOKIE
from .csrf import SAFE_METHODS, CsrfTokens, csrf_set_cookie
from .echo_router import echo_path
from .responses import PRETTY, error_response, wants_pretty
from .session_codec import COOKIE_NAME as SESSION_COOKIE
from .session_codec import SessionCodec
from .settings import Settings, SettingsError, get_settings

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset(
    {"/ping", "/sign-in", "/csrf", "/users/db-has-users", "/users/create-first-user"}
)
CSRF_SKIP_PATHS = frozenset({"/sign-in"})

MSG_MISSING_CSRF = "missing value in cookies"
MSG_INVALID_CSRF = "invalid csrf token"
MSG_UNAUTHORIZED = "Unauthorized: No valid session"


def _has_header(scope: Scope, name: bytes) -> bool:
    return any(k.lower() == name for k, _ in scope.get("headers", ()))


class LegacyProtection:
    """ASGI wrapper applying the legacy CSRF + Auth middleware to ``app``.

    ``codec`` / ``csrf_tokens`` default to the ones built from ``settings()``
    (the environment), resolved per request so a settings reload is seen;
    ``clock`` returns unix seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: SessionCodec | None = None,
        csrf_tokens: CsrfTokens | None = None,
        public_paths: Iterable[str] = PUBLIC_PATHS,
        csrf_skip_paths: Iterable[str] = CSRF_SKIP_PATHS,
        clock: Callable[[], float] = time.time,
        settings: Callable[[], Settings] = get_settings,
    ) -> None:
        self.app = app
        self._settings = settings
        self._codec = codec
        self._csrf_tokens = csrf_tokens
        self.public_paths = frozenset(public_paths)
        self.csrf_skip_paths = frozenset(csrf_skip_paths)
        self.clock = clock

    @property
    def codec(self) -> SessionCodec:
        return self._codec or self._settings().session_codec

    @property
    def csrf_tokens(self) -> CsrfTokens:
        return self._csrf_tokens or self._settings().csrf_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pretty = PRETTY.set(wants_pretty(scope.get("query_string", b"")))
        try:
            await self._handle(scope, receive, send)
        except SettingsError as exc:
            log.error("legacy protection misconfigured: %s", exc)
            await error_response(500, str(exc), method=scope["method"])(scope, receive, send)
        finally:
            PRETTY.reset(pretty)

    def route_path(self, scope: Scope) -> str:
        """Echo's ``c.Path()`` for this request (see the module docstring)."""
        finder = getattr(self.app, "route_path", None)
        return finder(scope) if finder is not None else echo_path(scope)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], self.route_path(scope)
        now = self.clock()
        state: dict[str, Any] = dict(scope.get("state") or {})
        added: list[tuple[bytes, bytes]] = []

        if method != "OPTIONS" and path not in self.csrf_skip_paths:
            existing = get_cookie(scope, CSRF_COOKIE)
            if existing is None and method not in SAFE_METHODS:
                invalid = _has_header(scope, b"x-csrf-token")
                status, msg = (403, MSG_INVALID_CSRF) if invalid else (400, MSG_MISSING_CSRF)
                await error_response(status, msg, method=method)(scope, receive, send)
                return
            token = existing if existing is not None else self.csrf_tokens.issue()
            state["csrf_token"] = token
            added = [
                (b"set-cookie", csrf_set_cookie(token, now).encode("latin-1")),
                (b"vary", b"Cookie"),
            ]

        if path not in self.public_paths:
            raw = get_cookie(scope, SESSION_COOKIE)
            email = self.codec.decode(raw, now) if raw is not None else None
            if email is None:
                response = error_response(401, MSG_UNAUTHORIZED, method=method)
                await response(scope, receive, _prepend_headers(send, added))
                return
            state["user_email"] = email

        inner = dict(scope)
        inner["state"] = state
        await self.app(inner, receive, _prepend_headers(send, added))


def _prepend_headers(send: Send, added: list[tuple[bytes, bytes]]) -> Send:
    if not added:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*added, *message.get("headers", ())]
        await send(message)

    return wrapped


def protect(app: ASGIApp, **options: Any) -> LegacyProtection:
    """Wrap a feature's ASGI app in the legacy CSRF + Auth semantics."""
    return LegacyProtection(app, **options)
