"""A cap on request bodies into Python features, applied before anything is buffered.

The registry runs every feature behind it (:meth:`services.registry.Service.call`),
so no feature can be made to buffer an unbounded body, whatever it is built
from. The limit is a parameter: ``Service.call(..., max_body=N)`` per request
(the gateway will pass routes.yaml's ``limits.python_body`` / a route's
``max_body`` there), :data:`DEFAULT_MAX_BODY` otherwise.

* ``Content-Length`` above the cap: **413** at once, before the feature runs
  and without reading a byte of the body;
* a chunked body (any ``Transfer-Encoding``, or a body whose length no
  header gives, as HTTP/2 allows): the feature's reads are counted and stop
  at the cap; the feature's own answer is dropped and the client gets the
  413. An HTTP/1 body framed by ``Content-Length`` alone is not counted: the
  server delivers no more than it says, and most requests (every GET) have
  no body at all.

The 413 is Echo's ``{"message":"Request Entity Too Large"}`` (what its
``BodyLimit`` middleware answers on ``Content-Length``), with
``Connection: close``: the rest of the body is never read, so the server
closes the connection after the answer instead of draining it. The legacy
has no limit (docs: each migration guide's "Known differences").
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_MAX_BODY", "BodyLimit", "BodyTooLarge", "call_with_body_limit"]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: ample for the legacy's JSON bodies
MSG_TOO_LARGE = "Request Entity Too Large"  # http.StatusText(413), as Echo says it
_HTTP1 = frozenset({"1.1", "1.0"})  # scope["http_version"]s whose bodies only the headers frame


class BodyTooLarge(Exception):
    """Raised from ``receive()`` when the body passes the cap."""


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's ``Content-Length`` (the largest, if repeated) or None,
    and whether it has a ``Transfer-Encoding``: one pass over the headers."""
    found: int | None = None
    coded = False
    for name, value in scope.get("headers", ()):
        if len(name) in (14, 17):  # the lengths first: no lower() for most headers
            name = name.lower()
            if name == b"content-length":
                if value.strip().isdigit():
                    found = max(found or 0, int(value))
            elif name == b"transfer-encoding":
                coded = True
    return found, coded


async def _send_too_large(scope: Scope, send: Send) -> None:
    # Imported here: services.common imports services.registry, which imports us.
    from services.common.responses import error_response, wants_pretty

    response = error_response(413, MSG_TOO_LARGE, method=scope["method"],
                              pretty=wants_pretty(scope.get("query_string", b"")),
                              headers=[("Connection", "close")])
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def call_with_body_limit(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                               max_body: int = DEFAULT_MAX_BODY) -> None:
    """Run ``app`` for one request with at most ``max_body`` bytes of body.

    An HTTP/1 scope without ``Transfer-Encoding`` is trusted to carry what its
    ``Content-Length`` says (none without one): a server's parser holds the
    client to that, so its body is not counted. A caller that builds such a
    scope itself (a test client with a hand-set ``Content-Length``) must keep
    the body to it, or the cap does not see the rest."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    declared, coded = _framing(scope)
    if declared is not None and declared > max_body:
        await _send_too_large(scope, send)
        return
    if not coded and scope.get("http_version") in _HTTP1:
        # HTTP/1 without Transfer-Encoding: the body is the Content-Length's
        # bytes, none without one (RFC 9112 §6.3), and the server holds the
        # client to that (more is the next request, or refused), so nothing
        # is left to count. HTTP/2 frames a body without either header, and a
        # scope that does not say its version could be anything: counted.
        await app(scope, receive, send)
        return

    received = 0
    exceeded = started = False

    async def limited_receive() -> Message:
        nonlocal received, exceeded
        if exceeded:
            raise BodyTooLarge(max_body)
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_body:
                exceeded = True
                raise BodyTooLarge(max_body)
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if exceeded:
            return  # the feature answers after swallowing BodyTooLarge: the 413 is sent instead
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, limited_receive, guarded_send)
    except BodyTooLarge:
        if started:
            raise  # the answer has begun (a feature that streams before reading): abort it
    if exceeded and not started:
        await _send_too_large(scope, send)


class BodyLimit:
    """:func:`call_with_body_limit` as an ASGI wrapper, for apps run outside the registry."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await call_with_body_limit(self.app, scope, receive, send, self.max_body)
