"""``GET /_bigbody?size=N``: N bytes in one ASGI message, so the whole answer
lands in the connection's write buffer at once (the edge tests' client that
never reads it)."""
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from services.registry import Service


async def bigbody(request: Request) -> Response:
    return Response(b"x" * int(request.query_params.get("size", "1024")), media_type="application/octet-stream")


SERVICE = Service(name="bigbody", prefixes=("/_bigbody",), app=Router(routes=[Route("/_bigbody", bigbody)]))
