"""The gateway's ASGI app: normalise the path, pick a route, hand the request over.

One request takes one straight path: ``match_path`` → ``holder.table`` (read
once: the request keeps the table it started with) → the route's state picks
the backend → the legacy forwarder or the Python service serves it. What the
gateway learns on the way (who answered, the status, a client that left, an
upstream failure) is kept in the request's ``RequestContext`` and read once at
the end for metrics, rollback windows and the access log.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from services.registry import Registry, Service, discover

from .context import RequestContext
from .edge.cors import CORSMiddleware
from .edge.cycle import edge_note
from .edge.limits import live as live_edge_limits
from .httpdate import add_date, http_date
from .migration.canary import CanaryChooser
from .migration.override import take_override
from .migration.rollback import RollbackGuard
from .migration.shadow import ShadowRunner
from .ops.admin import ADMIN_PREFIX, AdminApp
from .ops.metrics import Metrics
from .ops.tracing import tag_request
from .replies import gateway_error
from .routing.compile import compile_table
from .routing.config import GatewayConfig, load_config
from .routing.paths import BadPath, match_path
from .routing.readings import check_readings
from .routing.reload import Reloader, TableHolder
from .routing.table import Route, RouteTable
from .upstream.forwarders import Forwarders

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

SHUTDOWN_TIMEOUT = 10.0  # seconds each service's shutdown hook may take


def _send_with_date(send: Send) -> Send:
    """``send`` that stamps a Date on answers lacking one (off the hot path)."""
    async def dated(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = add_date(list(message.get("headers", [])))
        await send(message)

    return dated


@dataclass
class GatewaySettings:
    config_path: str
    access_log: bool = True
    redact_prefixes: tuple[str, ...] = ()  # beyond what services declare secret
    # Development only: 502/504 bodies also carry the backend's URL and the
    # exception, which otherwise only the log gets.
    debug_errors: bool = False

    @classmethod
    def from_env(cls) -> "GatewaySettings":
        redact = os.environ.get("GATEWAY_LOG_REDACT_PREFIXES", "")
        return cls(
            config_path=os.environ.get("GATEWAY_CONFIG", "routes.yaml"),
            access_log=os.environ.get("GATEWAY_ACCESS_LOG", "1") not in ("0", "false", "no"),
            redact_prefixes=tuple(p.strip().rstrip("/") for p in redact.split(",") if p.strip()),
            debug_errors=os.environ.get("GATEWAY_DEBUG_ERRORS", "0") in ("1", "true", "yes", "on"),
        )


class Gateway:
    def __init__(self, settings: GatewaySettings, registry: Registry | None = None):
        self.settings = settings
        self.registry = registry or discover()
        self.forwarders = Forwarders(debug_errors=settings.debug_errors)
        serves, dry_run_ok = self.registry.serves, self.registry.dry_run_ok
        config = load_config(settings.config_path, serves_prefix=serves, dry_run_ok=dry_run_ok)  # fail fast at boot
        self.holder = TableHolder(self.build(config))
        self.metrics = Metrics(os.environ.get("GATEWAY_METRICS_DIR"))
        self.shadow = ShadowRunner(self.metrics)
        self.canary = CanaryChooser(self.registry.identity)
        self.rollbacks = RollbackGuard(os.environ.get("GATEWAY_STATE_DIR") or os.environ.get("GATEWAY_METRICS_DIR"),
                                       self.metrics)
        self.admin_token = os.environ.get("GATEWAY_ADMIN_TOKEN") or None
        self.redact_prefixes = tuple(p.rstrip("/") for p in (*self.registry.secret_paths, *settings.redact_prefixes))
        self._housekeeping: asyncio.Task[None] | None = None
        self.reloader = Reloader(settings.config_path, self.holder, self.build, serves_prefix=serves,
                                 dry_run_ok=dry_run_ok, on_outcome=self.metrics.reload)
        self.admin = AdminApp(holder=self.holder, forwarders=self.forwarders, metrics=self.metrics,
                              rollbacks=self.rollbacks, services=self.registry.services,
                              config_path=settings.config_path)
        # The edge protocol sizes its descriptor reserve (and, later, reads
        # routes.yaml `limits:`) from the live table's config, per connection.
        live_edge_limits().attach(lambda: self.holder.table.config)

    def build(self, config: GatewayConfig) -> RouteTable:
        go = self.forwarders.get(config.legacy, config.trusted_proxies)
        return compile_table(config, self.registry, go)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # The legacy API has no websocket routes; refuse the handshake.
            await send({"type": "websocket.close", "code": 1008})

    # -- one request -----------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, trace_id = tag_request(scope)
        ctx = RequestContext(request_id, trace_id)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        try:
            path = match_path(raw_path, scope.get("query_string", b""))
            if b"%" in raw_path:  # each backend decodes differently: all must agree on the route
                check_readings(raw_path, path, self.holder.table, scope["method"], ADMIN_PREFIX)
        except BadPath as exc:
            start, body = gateway_error(400, f"Bad request path: {exc}")
            start["headers"] += [(b"x-request-id", request_id), (b"date", http_date())]
            await send(start)
            await send(body)
            ctx.status = 400
            self._done(ctx, scope)
            return
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            await self.admin(scope, receive, _send_with_date(send))
            return
        route = ctx.route = self.holder.table.lookup(path, scope["method"])
        service, cookie = self._choose(ctx, route, scope, path)

        async def receive_and_watch() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                ctx.client_gone = True
            return message

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                headers = message["headers"] = list(message.get("headers", []))
                # One pass over the headers for both checks: this is the hot path.
                has_request_id = dated = False
                for name, _ in headers:
                    name = name.lower()
                    if name == b"x-request-id":
                        has_request_id = True
                    elif name == b"date":
                        dated = True  # a proxied answer: keep the backend's own
                if not has_request_id:
                    headers.append((b"x-request-id", request_id))
                if not dated:
                    headers.append((b"date", http_date()))
                if cookie is not None:
                    headers.append((b"set-cookie", cookie))
            await send(message)

        try:
            if ctx.backend == "go":
                if route.state == "shadow":
                    await self.shadow.serve(ctx, route, scope, receive_and_watch, send_and_watch)
                else:
                    await route.go.forward(ctx, scope, receive_and_watch, send_and_watch)
            elif service is not None:
                await service.app(scope, receive_and_watch, send_and_watch)
            else:
                start, body = gateway_error(
                    409, "X-Gateway-Backend: python, but no Python service serves this path")
                await send_and_watch(start)
                await send(body)
        except Exception:
            if ctx.client_gone and ctx.status == 0:
                return  # the client left mid-request (e.g. ClientDisconnect): logged as 499
            log.exception("%s backend for %s %s raised", ctx.backend, scope["method"], path)
            if ctx.status == 0:
                start, body = gateway_error(500, "Internal Server Error")
                await send_and_watch(start)
                await send(body)
            else:
                raise
        finally:
            self._done(ctx, scope)

    def _choose(self, ctx: RequestContext, route: Route, scope: Scope, path: str) -> tuple[Service | None, bytes | None]:
        """Set ``ctx.backend``; return the Python service (when it answers) and a Set-Cookie to add."""
        forced = take_override(scope, self.admin_token)  # also strips the headers
        if forced == "go":
            ctx.backend = "go"
            return None, None
        if forced == "python":
            # The service that owns this very path, whatever the route says.
            service = self.registry.owner_of(path)
            ctx.backend = "python" if service is not None else "gateway"
            return service, None
        state = route.state
        if state == "python":
            ctx.backend = "python"
            return route.service, None
        if state != "canary" or self.rollbacks.is_rolled_back(route.spec):
            ctx.backend = "go"  # go, shadow (Go answers the client), or a rolled-back canary
            return None, None
        backend, cookie = self.canary.choose(route.prefix, route.spec.percent, scope)
        ctx.backend = backend
        return (route.service if backend == "python" else None), cookie

    def _done(self, ctx: RequestContext, scope: Scope) -> None:
        elapsed = time.perf_counter() - ctx.started
        route = ctx.route
        prefix = route.prefix if route else "(rejected)"
        status = ctx.status
        edge = edge_note(scope)  # the edge protocol ended the request (timeout, malformed body)?
        if status == 0 and ctx.client_gone:
            status = edge.status if edge and edge.status else 499  # 499: nginx's "client closed request"
        self.metrics.observe(prefix, ctx.backend, status, elapsed)
        if route is not None and route.state == "canary" and ctx.backend in ("go", "python"):
            self.rollbacks.record(route.spec, ctx.backend, status, elapsed)
        if ctx.upstream_error:
            self.metrics.upstream_error(prefix, ctx.upstream_error)
        if not self.settings.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        record = {
            "method": scope["method"],
            "path": self._loggable_path(scope),
            "status": status,
            "ms": round(elapsed * 1000, 2),
            "route": prefix,
            "state": route.state if route else None,
            "backend": ctx.backend,
            "service": route.service.name if route and route.service and ctx.backend == "python" else None,
            "client": client[0] if client else None,
            "request_id": ctx.request_id_text,
            "trace_id": ctx.trace_id.decode("latin-1"),
        }
        if ctx.upstream_error:
            record["upstream_error"] = ctx.upstream_error
        if edge and edge.reason:
            record["edge"] = edge.reason
        access_log.info(json.dumps(record, separators=(",", ":")))

    def _loggable_path(self, scope: Scope) -> str:
        """The raw path, with secrets in the path itself (``/api_keys/<key>``) cut.

        The prefix is checked on the decoded path too, so ``/api%5Fkeys/<key>``
        is cut as well."""
        raw = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        for prefix in self.redact_prefixes:
            for path in (raw, scope["path"]):
                if path.startswith(prefix + "/") and len(path) > len(prefix) + 1:
                    return prefix + "/<redacted>"
        return raw

    # -- lifespan ----------------------------------------------------------------
    def _start_services(self) -> None:
        for service in self.registry.services.values():
            if service.startup is not None:
                try:
                    service.startup()
                except Exception:  # one feature's failure must not stop the gateway
                    log.exception("startup of service %r failed; its routes may answer errors", service.name)

    async def _stop_services(self) -> None:
        """Each service's shutdown hook, bounded: a stuck one can't hold the stop."""
        for service in self.registry.services.values():
            if service.shutdown is None:
                continue
            try:
                result = service.shutdown()
                if inspect.isawaitable(result):
                    async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                        await result
                log.info("service %r stopped", service.name)
            except Exception:
                log.exception("shutdown of service %r failed", service.name)

    async def _tick(self) -> None:
        """Once a second: publish this worker's metrics, adopt other workers' rollbacks."""
        while True:
            await asyncio.sleep(1.0)
            try:
                self.metrics.publish()
                self.rollbacks.sync()
            except OSError as exc:
                log.warning("housekeeping: %s", exc)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reloader.start()
                self._start_services()
                self._housekeeping = asyncio.get_running_loop().create_task(self._tick())
                log.info("gateway up: %s version %s, legacy %s, %d route(s)",
                         self.settings.config_path, self.holder.table.version,
                         self.holder.table.config.legacy.url, len(self.holder.table.routes))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.reloader.stop()
                if self._housekeeping is not None:
                    self._housekeeping.cancel()
                await self.shadow.stop()
                await self._stop_services()
                self.metrics.publish()
                await self.forwarders.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> Any:
    """uvicorn factory (``--factory gateway.app:create_app``): settings from env.

    CORS wraps everything: the gateway is the one place CORS is answered, for
    python and go routes alike (see gateway/edge/cors.py).
    """
    return CORSMiddleware.from_env(Gateway(GatewaySettings.from_env()))
