"""The naive baseline the gateway is measured against.

What "the obvious" Python reverse proxy looks like: a Starlette catch-all route,
one shared ``httpx.AsyncClient``, the upstream body relayed with
``StreamingResponse(resp.aiter_raw())``, served by uvicorn with uvloop and
httptools, one worker, no access log. Its pool is as large as the gateway's in
the benchmark (1024), so the comparison is about per-request overhead, not about
a connection limit.

    python -m tools.bench.baseline_proxy --upstream http://127.0.0.1:PORT --port 8001
"""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "host",
})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(upstream: str, pool_size: int = 1024) -> Starlette:
    client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal client
        limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        async with httpx.AsyncClient(base_url=upstream, limits=limits,
                                     timeout=httpx.Timeout(60.0, connect=2.0)) as c:
            client = c
            yield

    async def proxy(request: Request) -> StreamingResponse:
        assert client is not None
        headers = [(k, v) for k, v in request.headers.items() if k not in HOP_BY_HOP]
        body = request.stream() if request.method not in ("GET", "HEAD") else None
        upstream_request = client.build_request(
            request.method, request.url.path, params=request.url.query or None,
            headers=headers, content=body,
        )
        resp = await client.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code,
                                 headers=out_headers, background=BackgroundTask(resp.aclose))

    return Starlette(routes=[Route("/{path:path}", proxy, methods=METHODS)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=1024)
    args = parser.parse_args()
    uvicorn.run(create_app(args.upstream.rstrip("/"), args.pool_size), host=args.host, port=args.port,
                workers=1, loop="uvloop", http="httptools", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
