"""Answers the gateway writes itself, never a backend's: ``{"message": "..."}``.

The shape is the one the frontend already parses for the legacy's framework
errors, so a 400 for a bad path or a 502 for a dead backend reads the same way
as any other error it knows.
"""
from __future__ import annotations

import json

from starlette.types import Message

from .context import RawHeaders
from .httpdate import http_date


def gateway_error(status: int, message: str) -> tuple[Message, Message]:
    """The two ASGI messages of a compact JSON error answer."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode() + b"\n"
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


def stamp(headers: RawHeaders, request_id: bytes, seen: tuple[bool, bool] | None = None) -> None:
    """What every answer the gateway serves carries, added in place to its
    headers unless they have it: ``X-Request-Id`` (the request's id) and
    ``Date`` (RFC 9110 §6.6.1; a proxied answer keeps the backend's own).
    ``seen``: whether they have each, ``(request id, date)``, when the
    caller's own pass over the headers found out (the forwarder's)."""
    if seen is None:
        has_id = has_date = False
        for name, _ in headers:
            name = name.lower()
            if name == b"x-request-id":
                has_id = True
            elif name == b"date":
                has_date = True
    else:
        has_id, has_date = seen
    if not has_id:
        headers.append((b"x-request-id", request_id))
    if not has_date:
        headers.append((b"date", http_date()))
