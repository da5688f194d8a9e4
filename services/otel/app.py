"""The six ``GET /otel/...`` routes (contract, "The six /otel reads").

Plain ASGI. Params come from ``scope["raw_path"]``, split on raw ``/`` and
each segment percent-decoded on its own, so a service name holding ``%2F``
(a slash), spaces or unicode reaches the query intact. Queries are
parameterised (store.py); the answer bytes come from the owner process
(owner.py), this one or another worker.
"""
from __future__ import annotations

import logging
from typing import Callable
from urllib.parse import unquote, unquote_to_bytes

from services.common.protect import protect
from services.common.responses import error_response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import gojson
from .owner import Pipeline, Unavailable, get_pipeline

log = logging.getLogger(__name__)

PREFIX = "/otel"


def match(segments: list[str]) -> tuple[str, dict[str, str]] | None:
    """(route, params) for the path segments after ``otel``, or None."""
    n = len(segments)
    if n == 1 and segments[0] == "span-service-names":
        return "service_names", {}
    if n == 3 and segments[0] == "service":
        if segments[2] == "root-spans":
            return "root_spans", {"serviceName": segments[1]}
        if segments[2] == "root-spans-filtered":
            return "root_spans_filtered", {"serviceName": segments[1]}
    if n == 3 and segments[0] == "trace" and segments[2] == "nested-spans":
        return "nested_spans", {"traceId": segments[1]}
    if n == 4 and segments[0] == "trace" and segments[2] == "span":
        return "span", {"traceId": segments[1], "spanId": segments[3]}
    if n == 4 and segments[:3] == ["spans", "type", "workflow"]:
        return "workflow_spans", {"serviceName": segments[3]}
    return None


def _segments(scope: Scope) -> list[str] | None:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    parts = raw.split(b"/")
    if len(parts) < 2 or parts[0] != b"" or parts[1] != b"otel":
        return None
    try:
        return [unquote_to_bytes(p).decode("utf-8") for p in parts[2:]]
    except UnicodeDecodeError:
        return [unquote(p.decode("latin-1"), errors="replace") for p in parts[2:]]


def _has_pretty(query: bytes) -> bool:
    for pair in query.split(b"&"):
        key = pair.split(b"=", 1)[0]
        if unquote_to_bytes(key.replace(b"+", b" ")) == b"pretty":
            return True
    return False


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class OtelApp:
    def __init__(self, pipeline: Callable[[], Pipeline | None] = get_pipeline) -> None:
        self._pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        segments = _segments(scope)
        found = match(segments) if segments is not None else None
        method = scope["method"]
        if found is None:
            await error_response(404, "Not Found", method=method)(scope, receive, send)
            return
        if method != "GET":  # Echo registers no HEAD: HEAD is a 405 too
            response = error_response(405, "Method Not Allowed", method=method,
                                      headers=[("Allow", "OPTIONS, GET")])
            await response(scope, receive, send)
            return
        route, params = found
        for name, value in params.items():
            if value == "":
                await _send(send, 400, gojson.dumps({"error": f"{name} parameter is required"}))
                return
        pretty = _has_pretty(scope.get("query_string", b""))
        pipeline = self._pipeline()
        try:
            status, body = await pipeline.answer(route, params, pretty)
        except Unavailable as exc:
            log.warning("otel: %s %s: trace store unavailable: %s", method, scope["path"], exc)
            body = gojson.dumps({"message": "The trace store is not available yet (it is starting, "
                                            "or its file is held by another program). Retry shortly; "
                                            "see /_gateway/health."})
            status = 503
        await _send(send, status, body)



def create_app(pipeline: Callable[[], Pipeline | None] = get_pipeline) -> ASGIApp:
    return protect(OtelApp(pipeline))
