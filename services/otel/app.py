"""The six ``GET /otel/...`` routes (contract, "The six /otel reads").

Served by the shared Echo router (services/common/echo_router.py) inside the
legacy middleware, like every feature: Echo's matching (a trailing param takes
the rest, a middle one may be empty), its 404/405 answers, ``?pretty`` as
``url.ParseQuery`` reads it. One deliberate difference: params matched on the
raw path are percent-decoded (``unescape=True``), so a service name holding
``%2F`` (a slash), or escapes Go would write differently (lower-case hex), still
reaches the query; the legacy leaves them escaped and finds nothing
(docs/migrating-traces.md). Queries are parameterised (store.py); the answer
bytes come from the owner process (owner.py), this one or another worker.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from services.common.echo_router import EchoRoute, EchoRouter, Handler
from services.common.protect import protect
from services.common.responses import MIME_JSON, PRETTY, json_response

from .owner import Pipeline, Unavailable, get_pipeline

log = logging.getLogger(__name__)

PREFIX = "/otel"

# (route name the store answers, Echo pattern); param names are the legacy's.
ROUTES = (
    ("service_names", "/otel/span-service-names"),
    ("root_spans", "/otel/service/:serviceName/root-spans"),
    ("root_spans_filtered", "/otel/service/:serviceName/root-spans-filtered"),
    ("nested_spans", "/otel/trace/:traceId/nested-spans"),
    ("span", "/otel/trace/:traceId/span/:spanId"),
    ("workflow_spans", "/otel/spans/type/workflow/:serviceName"),
)

MSG_UNAVAILABLE = ("The trace store is not available yet (it is starting, or its file is held by "
                   "another program). Retry shortly; see /_gateway/health.")


def _json(status: int, body: bytes) -> Response:
    """The owner's answer: bytes already encoded as Echo's c.JSON writes them
    (stored JSON through Go's float64 view, otel/gojson.py; newline included)."""
    return Response(body, status_code=status, media_type=MIME_JSON)


class OtelApp(EchoRouter):
    def __init__(self, pipeline: Callable[[], Pipeline | None] = get_pipeline) -> None:
        self._pipeline = pipeline
        super().__init__([EchoRoute(pattern, {"GET": self._handler(route)}, unescape=True)
                          for route, pattern in ROUTES])

    def _handler(self, route: str) -> Handler:
        async def handle(request: Request) -> Response:
            return await self.answer(route, request)
        return handle

    async def answer(self, route: str, request: Request) -> Response:
        params: dict[str, str] = request.path_params
        for name, value in params.items():
            if value == "":  # the legacy handlers' own check (a middle param may be empty)
                return json_response({"error": f"{name} parameter is required"}, 400)
        pipeline = self._pipeline()
        if pipeline is None:
            raise RuntimeError("the otel pipeline is not started")
        try:
            status, body = await pipeline.answer(route, params, PRETTY.get())
        except Unavailable as exc:
            log.warning("otel: GET %s: trace store unavailable: %s", request.url.path, exc)
            return json_response({"message": MSG_UNAVAILABLE}, 503)
        return _json(status, body)


def create_app(pipeline: Callable[[], Pipeline | None] = get_pipeline) -> ASGIApp:
    return protect(OtelApp(pipeline))
