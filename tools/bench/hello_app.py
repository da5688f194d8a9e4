"""The issue's machine yardstick: a raw ASGI "hello" on uvicorn (uvloop, httptools).

Issue #13 sets its absolute target (70 µs of CPU a proxied request) on a
machine where this app cost ~21 µs a request (47,100 req/s on one pinned
core). An absolute figure moves with the machine it is measured on (this VM's
own speed moves by ~1.7× between its phases), so ``make bench`` measures this
app in the same run and prints the target in its units too: 70 ÷ 21 ≈ 3.33×
the hello app's CPU a request.

One ASGI callable, no framework: every request gets 200 and 200 bytes (the size
of the upstream's ``/small``, so the same scenario measures it), one worker, no
access log.

    python -m tools.bench.hello_app --port 8002
"""
from __future__ import annotations

import argparse
from typing import Any

import uvicorn

BODY = b"h" * 200
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]}
MESSAGE = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(MESSAGE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
