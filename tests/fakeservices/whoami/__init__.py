"""Answers under /_standin/echo so a test can tell which backend served a request:
the Go stand-in's echo probe answers JSON with "method"; this one says "python"."""
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router

from services.registry import Service


async def whoami(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"backend": "python", "path": request.url.path})


SERVICE = Service(
    name="whoami",
    prefixes=("/_standin/echo",),
    app=Router(routes=[Route("/_standin/echo", whoami, methods=["GET", "POST"]),
                       Route("/_standin/echo/{rest:path}", whoami, methods=["GET", "POST"])]),
)
