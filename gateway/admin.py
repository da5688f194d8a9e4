"""The gateway's own surface under ``/_gateway/``; never routed to a backend.

- ``/_gateway/health``  liveness + config status (version, load time, last error)
- ``/_gateway/ready``   is the legacy backend reachable (503 when not)
- ``/_gateway/routes``  the live table as JSON
- ``/_gateway/explain?method=GET&path=/users/7``  which route wins and why
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, Router

from .metrics import render
from .paths import BadPath, match_path

if TYPE_CHECKING:
    from .app import Gateway


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


class AdminApp:
    def __init__(self, gateway: "Gateway"):
        self.gw = gateway
        self.router = Router(
            routes=[
                Route("/_gateway/health", self.health, methods=["GET"]),
                Route("/_gateway/ready", self.ready, methods=["GET"]),
                Route("/_gateway/routes", self.routes, methods=["GET"]),
                Route("/_gateway/explain", self.explain, methods=["GET"]),
                Route("/_gateway/metrics", self.metrics, methods=["GET"]),
                Route("/_gateway/status", self.status, methods=["GET"]),
                Route("/_gateway/status.json", self.status_json, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.router(scope, receive, send)

    async def health(self, request: Request) -> Response:
        holder = self.gw.holder
        body: dict[str, Any] = {
            "status": "ok" if holder.last_error is None else "degraded",
            "config": {
                "path": self.gw.settings.config_path,
                "version": holder.table.version,
                "loaded_at": _iso(holder.loaded_at),
                "reloads_ok": holder.reloads_ok,
                "reloads_failed": holder.reloads_failed,
                "error": holder.last_error,
                "error_at": _iso(holder.last_error_at),
            },
            "upstream": self._pool_stats(),
            "services": self._service_status(),
            "uptime_s": round(time.time() - self.gw.started, 1),
            "pid": os.getpid(),
        }
        # Liveness stays 200 with a bad edit pending: the last good table serves.
        return JSONResponse(body)

    def _service_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, service in sorted(self.gw.registry.services.items()):
            if service.status is not None:
                try:
                    out[name] = service.status()
                except Exception as exc:  # health must answer whatever a feature does
                    out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    def _pool_stats(self) -> dict[str, Any]:
        fwd = self.gw.forwarders.current()
        transport = getattr(fwd, "transport", None)
        return {
            "url": fwd.base_url if fwd else None,
            "open_connections": getattr(transport, "open_connections", None),
            "idle_connections": getattr(transport, "idle_connections", None),
        }

    async def ready(self, request: Request) -> Response:
        table = self.gw.holder.table
        forwarder = self.gw.forwarders.get(table.config.legacy, table.config.trusted_proxies)
        url = forwarder.base_url + "/ping"
        try:
            req = httpx.Request("GET", url, headers=[(b"host", forwarder.base.netloc)])
            resp = await forwarder.transport.handle_async_request(req)
            await resp.aclose()
            ok = resp.status_code < 500
            detail = f"GET {url} answered {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"GET {url} failed: {exc}"
        return JSONResponse({"ready": ok, "legacy": detail}, status_code=200 if ok else 503)

    async def metrics(self, request: Request) -> Response:
        holder = self.gw.holder
        gauges = {
            "gateway_config_error": ("1 while the last routes.yaml edit was rejected (the last good table serves).",
                                     1.0 if holder.last_error else 0.0),
            "gateway_config_loaded_timestamp_seconds": ("When this worker's live table was loaded.", holder.loaded_at),
        }
        text = render(self.gw.metrics.collect(), gauges)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def routes(self, request: Request) -> Response:
        return JSONResponse(self.gw.holder.table.describe())

    async def explain(self, request: Request) -> Response:
        method = request.query_params.get("method", "GET").upper()
        path = request.query_params.get("path")
        if not path:
            return JSONResponse({"message": "give ?path=/some/path (and optionally &method=POST)"}, status_code=400)
        try:
            norm = match_path(path.encode("utf-8"))
        except BadPath as exc:
            return JSONResponse({"message": f"the gateway rejects this path with 400: {exc}"}, status_code=200)
        user = request.query_params.get("user")
        return JSONResponse(explain_dict(self.gw.holder.table, method, norm, user, self.gw.rollbacks))

    def _status_data(self) -> dict[str, Any]:
        from .status import status_data

        return status_data(self.gw)

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(self._status_data())

    async def status(self, request: Request) -> Response:
        from .status_page import render_status

        return HTMLResponse(render_status(self._status_data()))


def explain_dict(table: Any, method: str, path: str, user: str | None = None,
                 rollbacks: Any = None) -> dict[str, Any]:
    """Which route wins, its state, and which backend (this user) would get."""
    from .canary import CanaryChooser

    match = table.explain(path, method)
    route = match.route
    out: dict[str, Any] = {
        "method": method,
        "path": path,
        "route": route.describe(),
        "state": route.target,
        "target": route.target,
        "reason": match.reason,
        "table_version": table.version,
    }
    if route.target in ("go", "python"):
        out["backend"] = route.target
    elif route.target == "shadow":
        out["backend"] = "go"
        out["note"] = "the client gets Go's answer; the request is replayed to Python and compared"
    else:
        rolled = rollbacks.reason(route.spec) if rollbacks is not None else None
        if rolled:
            out["backend"] = "go"
            out["note"] = f"automatically rolled back to go: {rolled['reason']}"
        elif user:
            out["backend"] = CanaryChooser.for_user(route.prefix, route.spec.percent, user)
            out["user"] = user
        else:
            out["backend"] = f"python for {route.spec.percent:g}% of users, go for the rest (give a user to know which)"
    return out
