"""``GET /ping`` → 200 ``pong``, byte for byte what the legacy Echo handler sends.

Served like every other feature: Echo's router (``HEAD /ping`` is a 405 with
``Allow: OPTIONS, GET``, as Echo registers no HEAD routes) inside the legacy
middleware, so the answer carries the ``csrf`` cookie and ``Vary: Cookie`` the
legacy's CSRF middleware adds to ``/ping`` too (the route is public: no session).
"""
from starlette.requests import Request
from starlette.responses import Response

from services.common.echo_router import EchoRoute, EchoRouter
from services.common.protect import protect
from services.registry import Service


async def ping(request: Request) -> Response:
    # Echo's c.String() spells the charset upper-case; keep it identical.
    return Response(b"pong", media_type="text/plain; charset=UTF-8")


SERVICE = Service(
    name="ping",
    prefixes=("/ping",),
    app=protect(EchoRouter([EchoRoute("/ping", {"GET": ping})])),
)
