"""Answers the gateway writes itself, never a backend's: ``{"message": "..."}``.

The shape is the one the frontend already parses for the legacy's framework
errors, so a 400 for a bad path or a 502 for a dead backend reads the same way
as any other error it knows.
"""
from __future__ import annotations

import json

from starlette.types import Message


def gateway_error(status: int, message: str) -> tuple[Message, Message]:
    """The two ASGI messages of a compact JSON error answer."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode() + b"\n"
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}
