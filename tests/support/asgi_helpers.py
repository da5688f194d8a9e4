"""Drive an ASGI app in-process with a hand-built scope (unit tests only)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    completed: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def make_scope(method: str = "GET", raw_path: bytes = b"/", query: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None, client: tuple[str, int] = ("203.0.113.9", 5555)) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers if headers is not None else [(b"host", b"gw.example")],
        "client": client,
        "server": ("127.0.0.1", 1324),
    }


async def call(app: Any, scope: dict[str, Any], body_chunks: list[bytes] | None = None,
               disconnect_after_body: asyncio.Event | None = None) -> Result:
    chunks = list(body_chunks or [b""])
    result = Result()

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        if disconnect_after_body is not None:
            await disconnect_after_body.wait()
        else:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        result.messages.append(message)
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")
            if not message.get("more_body", False):
                result.completed = True

    await app(scope, receive, send)
    return result
