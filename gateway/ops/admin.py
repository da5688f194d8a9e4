"""The gateway's own surface under ``/_gateway/``; never routed to a backend.

Open to anyone, minimal (status words and numbers; the admin token adds the detail):

- ``/_gateway/health``  liveness + config status (version, load time, last error)
- ``/_gateway/ready``   is the legacy backend reachable (503 when not), asked only
  while the live table sends something there

Closed: the admin token (``GATEWAY_ADMIN_TOKEN``, see access.py) or 401; 403
while no token is configured:

- ``/_gateway/routes``  the live table as JSON
- ``/_gateway/explain?method=GET&path=/users/7``  which route wins and why
- ``/_gateway/metrics``  Prometheus text, summed across workers
- ``/_gateway/status`` (``.json``)  the migration status page

Paths are exact: ``/_gateway/health/`` is a 404, never a redirect (Starlette's
``redirect_slashes`` would build the Location from the client's Host header).
Nothing here answers CORS (gateway/app.py never wraps this app in it), and
every answer is ``Cache-Control: no-store``: what the token sees must not be
kept by a cache and handed to someone without it.

It is handed what it reports on, never the whole gateway.
"""
from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Message, Receive, Scope, Send

from gateway.migration.rollback import RollbackGuard
from gateway.redact import redact_tree, redact_url
from gateway.routing.reload import TableHolder
from gateway.routing.warnings import config_warnings
from gateway.upstream.forwarders import Forwarders
from services.registry import Service

from .access import AdminAccess
from .explain import explain_target
from .metrics import CONTENT_TYPE, Gauges, Metrics, aggregate, registry
from .status import status_data
from .status_page import render_status

ADMIN_PREFIX = "/_gateway"
Handler = Callable[[Request], Awaitable[Response]]


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


class AdminApp:
    def __init__(
        self,
        *,
        holder: TableHolder,
        forwarders: Forwarders,
        metrics: Metrics,
        rollbacks: RollbackGuard,
        services: Mapping[str, Service],
        config_path: str,
        admin_token: str | None = None,
    ) -> None:
        self.holder = holder
        self.forwarders = forwarders
        self.metrics_ = metrics
        self.rollbacks = rollbacks
        self.services = services
        self.config_path = config_path
        self.access = AdminAccess(admin_token)
        self.started = time.time()
        # Private, created once: the collector reads the workers' snapshots
        # and this worker's config gauges at each scrape.
        self.registry = registry(metrics.collect, self._config_gauges)
        self.router = Router(
            routes=[
                Route(f"{ADMIN_PREFIX}/health", self.health, methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/ready", self.ready, methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/routes", self._closed(self.routes), methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/explain", self._closed(self.explain), methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/metrics", self._closed(self.metrics), methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/status", self._closed(self.status), methods=["GET"]),
                Route(f"{ADMIN_PREFIX}/status.json", self._closed(self.status_json), methods=["GET"]),
            ],
            redirect_slashes=False,  # a redirect would be built from the client's Host header
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"cache-control", b"no-store")]}
            await send(message)

        await self.router(scope, receive, no_store)

    # -- access ------------------------------------------------------------------
    def _admin(self, request: Request) -> bool:
        return self.access.allows(request.scope["headers"])

    def _closed(self, handler: Handler) -> Handler:
        """``handler`` behind the admin token."""
        async def closed(request: Request) -> Response:
            if not self._admin(request):
                return self.access.refusal(request.scope["path"])
            return await handler(request)

        return closed

    @staticmethod
    def _json(body: Mapping[str, Any], status_code: int = 200) -> Response:
        # Whatever a service's status or an error text quotes, no URL's password leaves.
        return JSONResponse(redact_tree(body), status_code=status_code)

    async def health(self, request: Request) -> Response:
        holder = self.holder
        body: dict[str, Any] = {
            "status": "ok" if holder.last_error is None else "degraded",
            "config": {
                "path": self.config_path,
                "version": holder.table.version,
                "loaded_at": _iso(holder.loaded_at),
                "reloads_ok": holder.reloads_ok,
                "reloads_failed": holder.reloads_failed,
                "error": holder.last_error,
                "error_at": _iso(holder.last_error_at),
            },
            "upstream": self._pool_stats(),
            "services": self._service_status(),
            "warnings": [{"code": w.code, "detail": w.detail} for w in config_warnings(holder.table.config)],
            "uptime_s": round(time.time() - self.started, 1),
            "pid": os.getpid(),
        }
        # Liveness stays 200 with a bad edit pending: the last good table serves.
        return self._json(body if self._admin(request) else _public_health(body))

    def _service_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, service in sorted(self.services.items()):
            if service.status is not None:
                try:
                    out[name] = service.status()
                except Exception as exc:  # health must answer whatever a feature does
                    out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    def _pool_stats(self) -> dict[str, Any]:
        fwd = self.forwarders.current()
        transport = getattr(fwd, "transport", None)
        return {
            "url": redact_url(fwd.base_url) if fwd else None,
            "open_connections": getattr(transport, "open_connections", None),
            "idle_connections": getattr(transport, "idle_connections", None),
        }

    async def ready(self, request: Request) -> Response:
        table = self.holder.table
        if not table.legacy_routes:
            # Go is retired from this table: its absence is no reason to leave rotation.
            detail = "not used: no route (nor the default) sends requests to it"
            return self._json({"ready": True, "legacy": detail} if self._admin(request) else {"ready": True})
        forwarder = self.forwarders.get(table.config.legacy, table.config.trusted_proxies)
        url = forwarder.base_url + table.config.legacy.ready_path  # routes.yaml legacy.ready_path
        shown = redact_url(url)
        try:
            req = httpx.Request("GET", url, headers=[(b"host", forwarder.base.netloc)])
            resp = await forwarder.transport.handle_async_request(req)
            await resp.aclose()
            ok = resp.status_code < 500
            detail = f"GET {shown} answered {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, detail = False, redact_url(f"GET {shown} failed: {exc}")
        body = {"ready": ok, "legacy": detail} if self._admin(request) else {"ready": ok}
        return self._json(body, status_code=200 if ok else 503)

    def _config_gauges(self) -> Gauges:
        holder = self.holder
        return {
            "gateway_config_error": ("1 while the last routes.yaml edit was rejected (the last good table serves).",
                                     1.0 if holder.last_error else 0.0),
            "gateway_config_loaded_timestamp_seconds": ("When this worker's live table was loaded.", holder.loaded_at),
        }

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)

    async def routes(self, request: Request) -> Response:
        return JSONResponse(self.holder.table.describe())

    async def explain(self, request: Request) -> Response:
        # ?path= is the request target as a client sends it (raw path, escapes
        # and all, optionally with ?query), URL-encoded into this query string.
        method = request.query_params.get("method", "GET")
        target = request.query_params.get("path")
        if not target:
            return JSONResponse({"message": "give ?path=/some/path (the request target, URL-encoded; "
                                            "optionally &method=POST&user=EMAIL)"}, status_code=400)
        user = request.query_params.get("user")
        return JSONResponse(explain_target(self.holder.table, method, target, user, self.rollbacks))

    def _status_data(self) -> dict[str, Any]:
        totals = aggregate(self.metrics_.collect())
        return status_data(totals, self.holder.table, self.rollbacks, self.holder.last_change,
                           self.holder.last_error)

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(self._status_data())

    async def status(self, request: Request) -> Response:
        return HTMLResponse(render_status(self._status_data()))


def _public_health(full: Mapping[str, Any]) -> dict[str, Any]:
    """What anyone may read: status words and numbers — no paths, URLs, pids or error texts.

    An allow-list, so a field added to the full answer stays behind the token
    until someone decides it is harmless."""
    return {"status": full["status"], "uptime_s": full["uptime_s"],
            "warnings": [{"code": w["code"]} for w in full["warnings"]]}  # codes only: the detail names settings
