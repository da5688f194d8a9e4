"""A Python twin of the stand-in's /_standin/echo/mirror/... probe, for shadow tests.

It answers the JSON the Go echo probe answers (the parts a diff compares;
headers differ by nature and are ignored by the routes under test), and it can
misbehave on request: ``/planted`` plants a difference, ``/raise`` crashes,
``/hang`` never answers. Writes record whether they were replayed as dry runs.
"""
import asyncio
import hashlib

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router

from services.registry import Service, in_dry_run

WRITES: list[dict] = []  # (in the gateway process) what write replays saw


async def mirror(request: Request) -> JSONResponse:
    body = await request.body()
    tail = request.url.path.rsplit("/", 1)[-1]
    if tail == "raise":
        raise RuntimeError("planted crash")
    if tail == "hang":
        await asyncio.sleep(3600)
    if request.method not in ("GET", "HEAD"):
        WRITES.append({"path": request.url.path, "dry_run": in_dry_run()})
    raw = request.scope.get("raw_path") or request.url.path.encode()
    qs = request.scope.get("query_string", b"")
    uri = (raw + (b"?" + qs if qs else b"")).decode()
    cl = request.headers.get("content-length")
    return JSONResponse({
        "method": request.method,
        "uri": uri,
        "proto": "HTTP/1.1",
        "host": request.headers.get("host", ""),
        "body_len": len(body) + (1 if tail == "planted" else 0),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "content_length": int(cl) if cl is not None else (0 if request.method == "GET" else -1),
        "transfer_encoding": [],
        "dry_run_writes": sum(1 for w in WRITES if w["dry_run"]),
    })


SERVICE = Service(
    name="mirror",
    prefixes=("/_standin/echo/mirror",),
    app=Router(routes=[Route("/_standin/echo/mirror/{rest:path}", mirror, methods=["GET", "POST"])]),
    dry_run=True,
)
