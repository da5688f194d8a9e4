"""A Python module with a planted regression: /_standin/status/... answers 500."""
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from services.registry import Service


async def broken(request: Request) -> PlainTextResponse:
    return PlainTextResponse("regression\n", status_code=500)


SERVICE = Service(
    name="flaky",
    prefixes=("/_standin/status",),
    app=Router(routes=[Route("/_standin/status/{code}", broken, methods=["GET"])]),
)
