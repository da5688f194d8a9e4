"""The yardstick for an in-process Python route: ``services/ping`` alone on uvicorn.

The very ASGI app the gateway mounts for ``/ping`` (``services.ping.SERVICE.app``:
the legacy CSRF/auth wrapper around the Echo-like router), served by uvicorn with
uvloop and httptools, one worker, no access log — what the route would cost
without a gateway around it. ``make bench`` compares the gateway's ``GET /ping``
with this.

    python -m tools.bench.ping_app --port 8002
    python -m tools.bench.ping_app --port 8002 --edge   # on the gateway's edge protocol instead
    python -m tools.bench.ping_app --port 8002 --access-log   # with uvicorn's own access log, its default

``--edge`` serves the same app through the gateway's client-side protocol
(``gateway.edge.protocol:EdgeProtocol``: head limits, timeouts, connection
limit) instead of uvicorn's own httptools protocol: the difference is what the
edge costs a request. ``--access-log`` turns uvicorn's access log on, as
uvicorn has it by default (a line per request through ``logging`` to stdout):
the app alone logging each request, as the gateway does.
"""
from __future__ import annotations

import argparse

import uvicorn

from services.ping import SERVICE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--edge", action="store_true", help="serve on the gateway's edge protocol")
    parser.add_argument("--access-log", action="store_true", help="uvicorn's access log on (its default)")
    args = parser.parse_args()
    http = "gateway.edge.protocol:EdgeProtocol" if args.edge else "httptools"
    # uvicorn writes access lines at INFO: its log level must let them through.
    uvicorn.run(SERVICE.app, host=args.host, port=args.port, workers=1, loop="uvloop", http=http,
                access_log=args.access_log, log_level="info" if args.access_log else "warning")


if __name__ == "__main__":
    main()
