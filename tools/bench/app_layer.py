"""What the gateway's app layer adds to an in-process Python route, with no sockets.

Calls ``services/ping``'s ASGI app directly, then the gateway app (routing,
request ids, the request context, metrics, the body cap, the send wrapper)
serving the same ``GET /ping``, alternately, N requests each, and prints the
CPU µs per request of each (``time.thread_time``). uvicorn, the edge protocol
and the access log's writer are not in it: ``make bench``'s ``ping64`` rows
measure the whole, over sockets.

    python -m tools.bench.app_layer [--requests 20000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from starlette.types import ASGIApp, Message, Scope

ROUTES = "legacy:\n  url: http://127.0.0.1:9\ndefault: go\nroutes:\n  - prefix: /ping\n    to: python\n"


def _scope() -> Scope:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/ping", "raw_path": b"/ping", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:1324"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 1324), "state": {}}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


async def _per_request_us(app: ASGIApp, n: int) -> float:
    for _ in range(200):  # warm
        await app(_scope(), _receive, _send)
    started = time.thread_time()
    for _ in range(n):
        await app(_scope(), _receive, _send)
    return (time.thread_time() - started) / n * 1e6


async def _main(requests: int, rounds: int) -> None:
    from gateway.app import create_app
    from services.ping import SERVICE

    gateway = create_app()
    added = []
    for i in range(rounds):
        alone = await _per_request_us(SERVICE.app, requests)
        through = await _per_request_us(gateway, requests)
        added.append(through - alone)
        print(f"round {i + 1}: services/ping alone {alone:.1f} µs, through the gateway app {through:.1f} µs "
              f"(+{through - alone:.1f} µs)")
    print(f"the gateway app adds {statistics.median(added):.1f} µs a request (median of {rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="app-layer-") as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(ROUTES)
        os.environ.update(GATEWAY_CONFIG=str(routes), JUNJO_SQLITE_PATH=str(Path(tmp) / "app.db"))
        os.environ.pop("LEGACY_URL", None)
        os.environ.setdefault("JUNJO_SESSION_SECRET", "bench-secret")
        asyncio.run(_main(args.requests, args.rounds))


if __name__ == "__main__":
    main()
