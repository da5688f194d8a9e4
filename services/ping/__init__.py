"""``GET /ping`` → 200 ``pong``, byte for byte what the legacy Echo handler sends."""
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from services.registry import Service


async def ping(request: Request) -> Response:
    # Echo's c.String() spells the charset upper-case; keep it identical.
    return Response(b"pong", media_type="text/plain; charset=UTF-8")


SERVICE = Service(
    name="ping",
    prefixes=("/ping",),
    app=Router(routes=[Route("/ping", ping, methods=["GET"])]),
)
