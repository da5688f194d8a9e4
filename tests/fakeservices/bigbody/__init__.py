"""``GET /_bigbody?size=N``: N bytes in one ASGI message, so the whole answer
lands in the connection's write buffer at once (the edge tests' client that
never reads it). ``GET /_bigbody/bad-header?kind=value|name|ok``: an answer with
a header no server may write (CR LF in a value: response splitting; a space
in a name)."""
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from services.registry import Service


async def bigbody(request: Request) -> Response:
    return Response(b"x" * int(request.query_params.get("size", "1024")), media_type="application/octet-stream")


async def bad_header(request: Request) -> Response:
    kind = request.query_params.get("kind")
    if kind == "name":
        return Response(b"ok", headers={"X Bad": "1"})
    if kind == "value":
        return Response(b"ok", headers={"X-Echo": "a\r\nX-Injected: 1"})
    return Response(b"ok", headers={"X-Echo": "a"})  # the control: a header any server writes


SERVICE = Service(name="bigbody", prefixes=("/_bigbody",), app=Router(routes=[
    Route("/_bigbody", bigbody), Route("/_bigbody/bad-header", bad_header)]))
