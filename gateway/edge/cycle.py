"""The request/response cycle of the edge protocol, and what it tells the app.

uvicorn 0.54's ``RequestResponseCycle`` plus two things the edge needs: whether
the app has started on the request (the line between a 400 and a silent close
for a malformed body, gateway/edge/protocol.py), and close-delimited bodies for
HTTP/1.0 clients, who can't read chunked framing (RFC 9112 §7).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

EDGE_KEY = "gateway.edge"  # scope["extensions"][EDGE_KEY]: the request's EdgeNote


@dataclass(slots=True)
class EdgeNote:
    """What the edge did to a request the app already had (read by the access log)."""

    reason: str | None = None  # why the edge ended it
    status: int | None = None  # what it answered in the app's stead, if anything


def edge_note(scope: Any) -> EdgeNote | None:
    return (scope.get("extensions") or {}).get(EDGE_KEY)


class EdgeCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, plus: whether the app has started (the
    line between a 400 and a silent close), and close-delimited bodies for
    HTTP/1.0 clients."""

    task: asyncio.Task[None] | None = None
    app_started = False
    close_delimited = False

    async def run_asgi(self, app: Any) -> None:
        self.app_started = True
        await super().run_asgi(app)

    async def send(self, message: Any) -> None:
        if not self.response_started:
            if message["type"] == "http.response.start" and self.scope["http_version"] == "1.0":
                message = self._for_http10(message)
        elif self.close_delimited and not self.response_complete:
            await self._send_close_delimited(message)
            return
        await super().send(message)

    def _for_http10(self, message: Any) -> Any:
        """A 1.0 client can't read chunked framing: a body of unknown length is
        delimited by closing the connection (uvicorn already closes after a
        1.0 request)."""
        status = message["status"]
        headers = list(message.get("headers", []))
        if (self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
                or any(n.lower() == b"content-length" for n, _ in headers)):
            return message
        self.close_delimited = True
        self.chunked_encoding = False  # uvicorn then adds no transfer-encoding
        self.keep_alive = False
        return {**message, "headers": [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]}

    async def _send_close_delimited(self, message: Any) -> None:
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        body = message.get("body", b"")
        if body:
            self.transport.write(body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.message_event.set()
            self.transport.close()
            self.on_response()
