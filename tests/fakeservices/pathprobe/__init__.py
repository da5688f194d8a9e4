"""Says which path it was handed, exactly: for the routing fuzz test.

A plain ASGI app (no router, no URL rebuilding) answering every request with
the scope's ``path`` (decoded, what a Python route matches on) and
``raw_path``, marked ``x-backend: python`` so the test can tell it from Go."""
import json

from services.registry import Service


async def app(scope, receive, send) -> None:
    while (await receive()).get("more_body"):
        pass
    body = json.dumps({"backend": "python", "path": scope["path"],
                       "raw_path": scope["raw_path"].decode("latin-1")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-backend", b"python")]})
    await send({"type": "http.response.body", "body": body})


SERVICE = Service(name="pathprobe", prefixes=("/_standin/echo/py", "/_standin/echo/go/py"), app=app)
