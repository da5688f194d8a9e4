"""The gateway's ASGI app: normalise the path, pick a route, hand the request over.

One request takes one straight path: ``holder.table`` (read once: the request
keeps the table it started with) → ``table.resolve`` (the raw path matched,
the admin prefix checked, the route looked up: the very function ``explain``
calls) → the route's state picks the backend → the legacy forwarder or the
Python service serves it. The table's CORS policy (routes.yaml ``cors:``)
wraps all of it except the admin surface. What the
gateway learns on the way (who answered, the status, a client that left, an
upstream failure) is kept in the request's ``RequestContext`` and read once at
the end for metrics, rollback windows and the access log.
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from services.registry import Registry, Service, discover

from .context import RequestContext
from .edge import events as edge_events
from .edge.client import client_and_peer, scope_for_python
from .edge.cycle import edge_note
from .edge.limits import live as live_edge_limits
from .httpdate import add_date
from .migration.canary import CanaryChooser
from .migration.override import take_override
from .migration.rollback import RollbackGuard
from .migration.shadow import ShadowRunner
from .ops import logs
from .ops.admin import AdminApp
from .ops.metrics import Metrics
from .ops.shared_state import open_shared_state, replica_warnings
from .ops.tracing import tag_request
from .redact import redact_url
from .replies import gateway_error, stamp
from .routing.compile import compile_table
from .routing.config import GatewayConfig, load_config
from .routing.reload import Reloader, TableHolder
from .routing.table import Resolution, Route, RouteTable
from .routing.warnings import config_warnings
from .settings import GatewaySettings
from .upstream.forwarders import Forwarders
from .upstream.headers import TrustedProxies

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

SHUTDOWN_TIMEOUT = 10.0  # seconds each service's shutdown hook may take
MIN_ADMIN_TOKEN = 16  # characters below which the start warns about GATEWAY_ADMIN_TOKEN
# Young-generation GC threshold once serving (CPython's default is 700): see _tune_gc.
GC_YOUNG_THRESHOLD = 20_000


def _send_with_date(send: Send) -> Send:
    """``send`` that stamps a Date on answers lacking one (off the hot path)."""
    async def dated(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = add_date(list(message.get("headers", [])))
        await send(message)

    return dated


class _Watched:
    """A request's ``receive`` and ``send`` as the gateway watches them: the
    status sent and a client that left go into the context; an answer gets
    what ``replies.stamp`` adds and the canary's Set-Cookie, if any."""

    __slots__ = ("_ctx", "_receive", "_send", "_cookie")

    def __init__(self, ctx: RequestContext, receive: Receive, send: Send, cookie: bytes | None) -> None:
        self._ctx, self._receive, self._send, self._cookie = ctx, receive, send, cookie

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._ctx.client_gone = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            ctx = self._ctx
            ctx.status = message["status"]
            headers = message["headers"] = list(message.get("headers", []))
            stamp(headers, ctx.request_id)
            if self._cookie is not None:
                headers.append((b"set-cookie", self._cookie))
        await self._send(message)


class Gateway:
    def __init__(self, settings: GatewaySettings, registry: Registry | None = None, *, owns_process: bool = False):
        self.settings = settings
        # True under `gateway serve`: the process is the gateway's alone, so it
        # may tune process-wide things (the GC) at startup.
        self.owns_process = owns_process
        self.registry = registry or discover(("services", *settings.service_packages))
        self.forwarders = Forwarders(debug_errors=settings.debug_errors)
        table = self.build(self.load(settings.config_path))  # fail fast at boot
        self.activate(table)
        self.holder = TableHolder(table)
        self.metrics = Metrics(settings.metrics_dir)
        self.shadow = ShadowRunner(self.metrics)
        self.canary = CanaryChooser(self.registry.identity, settings.secret.encode() if settings.secret else None)
        # Canary verdicts: a file for one host's workers, or PostgreSQL for every replica.
        self.shared_state = open_shared_state(
            "rollback", state_dir=settings.state_dir or settings.metrics_dir, database_url=settings.database_url)
        self.rollbacks = RollbackGuard(self.shared_state, self.metrics)
        self.admin_token = settings.admin_token or None
        self.redact_prefixes = tuple(p.rstrip("/") for p in (*self.registry.secret_paths, *settings.redact_prefixes))
        self._redact_below = tuple(p + "/" for p in self.redact_prefixes)  # one startswith() per request
        self._housekeeping: asyncio.Task[None] | None = None
        self.reloader = Reloader(settings.config_path, self.holder, self.build, load=self.load,
                                 activate=self.activate, on_outcome=self.metrics.reload)
        self.admin = AdminApp(holder=self.holder, forwarders=self.forwarders, metrics=self.metrics,
                              rollbacks=self.rollbacks, services=self.registry.services,
                              config_path=settings.config_path, admin_token=self.admin_token)
        self._access = _access_sink() if settings.access_log else None
        self._render_access = self._access_line  # bound once: not a new method object per request
        # The edge protocol sizes its descriptor reserve (and reads routes.yaml
        # `limits:`) from the live table's config, per connection.
        live_edge_limits().attach(lambda: self.holder.table.config)

    def load(self, path: str | os.PathLike[str], deadline: float | None = None) -> GatewayConfig:
        return load_config(path, serves_prefix=self.registry.serves, dry_run_ok=self.registry.dry_run_ok,
                           legacy_url=self.settings.legacy_url, deadline=deadline)

    def build(self, config: GatewayConfig) -> RouteTable:
        """The table for ``config`` (pure: a reload runs it in its worker thread).
        routes.yaml's ``limits:`` reach the upstream through UpstreamSettings.from_config."""
        go = self.forwarders.prepare(config.legacy, config.trusted_proxies, config.limits)
        return compile_table(config, self.registry, go)

    def activate(self, table: RouteTable) -> None:
        """On the loop, as ``table`` goes live: its upstream pool serves, the old one retires."""
        config = table.config
        self.forwarders.adopt(config.legacy, config.trusted_proxies, table.default.go)
        # At start and at every reload that keeps them: an operator who forgot
        # something must not be able to miss it in the log.
        for warning in config_warnings(config):
            log.warning("CONFIG WARNING [%s] %s", warning.code, warning.detail)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # one request, in this coroutine: no other layer for it
            table = self.holder.table  # read once: the request keeps this table
            # One decision, from the raw path, for routing, the admin check and
            # CORS alike; /_gateway/explain answers from this same call.
            where = table.resolve(scope["method"], scope.get("raw_path") or scope["path"].encode(),
                                  scope.get("query_string", b""))
            if where.admin:
                await self.admin(scope, receive, _send_with_date(send))  # never CORS (issue 14)
            elif table.cors is None:
                await self._serve(where, scope, receive, send)
            else:
                await table.cors.handle(scope, receive, send, partial(self._serve, where))
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            # The legacy API has no websocket routes; refuse the handshake.
            await send({"type": "websocket.close", "code": 1008})

    # -- one request -----------------------------------------------------------
    async def _serve(self, where: Resolution, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, trace_id = tag_request(scope)
        ctx = RequestContext(request_id, trace_id)
        path, route = where.path, where.route
        if path is None or route is None:  # rejected: admin requests never get here
            start, body = gateway_error(400, f"Bad request path: {where.rejected}")
            stamp(start["headers"], request_id)
            await send(start)
            await send(body)
            ctx.status = 400
            self._done(ctx, scope, None)
            return
        service, cookie = self._choose(ctx, route, scope, path)
        try:
            if ctx.backend == "go" and cookie is None and route.state != "shadow":
                # The common case, with nothing to add but what replies.stamp
                # adds: the forwarder stamps its answers itself (stamp=True)
                # and gets send() as it is, a wrapper fewer per message. (So
                # anything else an answer should get, as the canary's cookie,
                # goes through _Watched: keep it out of this branch.) It
                # notices a leaving client itself (and sets ctx.client_gone):
                # it gets receive() unwrapped too.
                await route.go.forward(ctx, scope, receive, send, stamp=True)
            else:
                watched = _Watched(ctx, receive, send, cookie)
                if ctx.backend == "go":
                    if route.state == "shadow":
                        await self.shadow.serve(ctx, route, scope, watched.receive, watched.send)
                    else:
                        await route.go.forward(ctx, scope, receive, watched.send)
                elif service is not None:
                    # The client the gateway derives (trusted X-Forwarded-For), as Python sees it.
                    python_scope = scope_for_python(scope, getattr(route.go, "trusted", None))
                    await service.call(python_scope, watched.receive, watched.send, max_body=route.max_body)
                else:
                    start, body = gateway_error(
                        409, "X-Gateway-Backend: python, but no Python service serves this path")
                    await watched.send(start)
                    await send(body)
        except Exception:
            if ctx.client_gone and ctx.status == 0:
                return  # the client left mid-request (e.g. ClientDisconnect): logged as 499
            log.exception("%s backend for %s %s raised", ctx.backend, scope["method"], path)
            if ctx.status == 0:
                start, body = gateway_error(500, "Internal Server Error")
                await _Watched(ctx, receive, send, cookie).send(start)
                await send(body)
            else:
                raise
        finally:
            self._done(ctx, scope, route)

    def _choose(self, ctx: RequestContext, route: Route, scope: Scope,
                path: str) -> tuple[Service | None, bytes | None]:
        """Set ``ctx.backend``; return the Python service (when it answers) and a Set-Cookie to add."""
        forced = take_override(scope, self.admin_token)  # also strips the headers
        if forced == "go":
            ctx.backend = "go"
            return None, None
        if forced == "python":
            # The service that owns this very path, whatever the route says; a
            # path no service owns goes to the fallback (the legacy's answer
            # for unknown paths) when there is one.
            service = self.registry.owner_of(path) or self.registry.fallback
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

    def _done(self, ctx: RequestContext, scope: Scope, route: Route | None) -> None:
        """Metrics, rollback windows and the access line, once the request is over.
        ``route`` is None for a request refused before routing (a bad path)."""
        elapsed = time.perf_counter() - ctx.started
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
        access = self._access
        if access is not None:
            # The writer thread renders the line (_access_line), off the request path.
            # Who the client is follows trusted_proxies even for a request refused
            # before routing: the table's default route carries them too.
            trusted = (route or self.holder.table.default).go.trusted
            access.defer(self._render_access, access_record(ctx, scope, route, prefix, status, elapsed,
                                                            edge.reason if edge else None, trusted))

    def _access_line(self, record: tuple[Any, ...]) -> str:
        """One access-log line from what ``_done`` kept (runs in the log writer's
        thread, once per request: the common case is inlined, no helper calls)."""
        (now, method, raw_path, path, status, elapsed, route, state, backend, service, client,
         request_id, trace_id, upstream_error, edge, peer) = record
        raw = raw_path.decode("latin-1") if raw_path else path
        below = self._redact_below
        if below and (raw.startswith(below) or path.startswith(below)):
            raw = self._loggable_path(raw, path)
        rid = request_id.decode("latin-1")
        return logs.access_line(  # positional: this runs for every request
            method, raw, status, elapsed * 1000, route, state, backend, service, client, rid,
            rid if trace_id is request_id else trace_id.decode("latin-1"), upstream_error, edge, now, peer)

    def _loggable_path(self, raw: str, path: str) -> str:
        """The raw path ``raw``, with secrets in the path itself (``/api_keys/<key>``) cut.

        The prefix is checked on the decoded ``path`` too, so ``/api%5Fkeys/<key>``
        is cut as well. Only called when ``raw`` or ``path`` starts with one of
        ``_redact_below`` (:meth:`_access_line` checks: the common case is none)."""
        for prefix in self.redact_prefixes:
            for candidate in (raw, path):
                if candidate.startswith(prefix + "/") and len(candidate) > len(prefix) + 1:
                    return prefix + "/<redacted>"
        return raw

    # -- lifespan ----------------------------------------------------------------
    def _log_admin_access(self) -> None:
        """Say at start whether the closed part of /_gateway/ can be opened at all."""
        token = self.admin_token
        if token is None:
            log.warning("GATEWAY_ADMIN_TOKEN is not set: /_gateway/routes, explain, metrics and status answer "
                        "403 (health and ready stay open, without detail)")
        elif len(token) < MIN_ADMIN_TOKEN:
            log.warning("GATEWAY_ADMIN_TOKEN has %d characters; use a long random value (at least %d, e.g. "
                        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", len(token), MIN_ADMIN_TOKEN)

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

    def _count_edge_events(self) -> None:
        for kind, n in edge_events.take().items():
            self.metrics.inc("gateway_edge_events_total", {"limit": kind}, n)

    async def _tick(self) -> None:
        """Once a second: publish this worker's metrics, share and adopt rollback verdicts."""
        while True:
            await asyncio.sleep(1.0)
            self._count_edge_events()
            try:
                self.metrics.publish()
            except OSError as exc:
                log.warning("housekeeping: %s", exc)
            try:
                # A thread: the verdicts may live in a database, never queried on the loop.
                await asyncio.to_thread(self.rollbacks.sync)
            except Exception as exc:  # a database that is down must not end the loop
                log.warning("housekeeping: canary rollback verdicts not shared (%s): %s",
                            self.shared_state.describe() if self.shared_state else "-", exc)

    async def _last_share(self) -> None:
        """A verdict made in the last second still reaches the other processes."""
        try:
            async with asyncio.timeout(3):
                await asyncio.to_thread(self.rollbacks.sync)
        except Exception as exc:
            log.warning("canary rollback verdicts not shared at shutdown: %s", exc)
        dispose = getattr(self.shared_state, "dispose", None)
        if dispose is not None:
            dispose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reloader.start()
                self._start_services()
                self._housekeeping = asyncio.get_running_loop().create_task(self._tick())
                for warning in replica_warnings(self.settings.database_url, self.settings.secret):
                    log.warning(warning)
                log.info("gateway up: %s version %s, legacy %s, %d route(s); canary verdicts shared through %s",
                         self.settings.config_path, self.holder.table.version,
                         redact_url(self.holder.table.config.legacy.url), len(self.holder.table.routes),
                         self.shared_state.describe() if self.shared_state else "nothing (this process only)")
                self._log_admin_access()
                if self.owns_process:
                    _tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.reloader.stop()
                if self._housekeeping is not None:
                    self._housekeeping.cancel()
                await self.shadow.stop()
                await self._stop_services()
                self._count_edge_events()
                self.metrics.publish()
                await self._last_share()
                await self.forwarders.aclose()
                # Every request is answered and logged: write out the log
                # backlog now. uvicorn ends a SIGTERM'd worker by re-raising
                # the signal, which leaves no chance to do it later.
                logs.finish()
                await send({"type": "lifespan.shutdown.complete"})
                return


def access_record(ctx: RequestContext, scope: Scope, route: Route | None, prefix: str, status: int,
                  elapsed: float, edge: str | None, trusted: TrustedProxies | None = None) -> tuple[Any, ...]:
    """What an access line needs, as it is: the request path's whole share of
    the access log, with the writer's ``defer`` (tools/bench times the two).
    Everything in it is immutable or never changed after the request."""
    socket_peer = scope.get("client")
    client, peer = (socket_peer[0] if socket_peer else None), None
    if trusted is not None and trusted.networks:  # behind a load balancer: the client it names
        client, peer = client_and_peer(scope, trusted)
    backend = ctx.backend
    return (
        time.time(), scope["method"], scope.get("raw_path"), scope["path"], status, elapsed, prefix,
        route.state if route else None, backend,
        route.service.name if route and route.service and backend == "python" else None,
        client, ctx.request_id, ctx.trace_id, ctx.upstream_error, edge, peer,
    )


class _ThroughLogging:
    """The access log of a gateway embedded in another app (tests, plain
    uvicorn): each line through the ``gateway.access`` logger, rendered at once."""

    def defer(self, render: Callable[[Any], str], record: Any) -> None:
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(render(record).rstrip("\n"))


def _access_sink() -> logs.LineWriter | _ThroughLogging:
    """Where access-log lines go: straight to the JSON stdout writer under
    ``gateway serve`` (no ``logging`` record per request), else through the
    ``gateway.access`` logger."""
    return logs.configured_writer() or _ThroughLogging()


def _tune_gc() -> None:
    """Keep CPython's cyclic GC off the request path, once the app is loaded.

    Requests make no reference cycles, but with a few hundred in flight the
    young generation passes CPython's 700-object threshold all the time, and
    every tenth pass a full collection walks every module, config and service
    object loaded at boot (~25 ms each, measured here): ~12 µs per request in
    all, and a latency spike each time. ``gc.freeze()`` moves what boot built
    out of the collector's sight for good, and a young threshold above the
    objects requests keep alive means collections run when garbage grows, not
    on every burst of traffic. Cycles are still collected."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def create_app(*, owns_process: bool = False) -> Any:
    """uvicorn factory (``--factory gateway.app:create_app``): settings from env,
    read once per worker process. CORS comes from the live table (routes.yaml
    ``cors:``), for python and go routes alike (see gateway/edge/cors.py)."""
    return Gateway(GatewaySettings.from_env(), owns_process=owns_process)


def serve_app() -> Any:
    """The factory ``gateway serve`` hands uvicorn: the app in a worker process
    of its own (JSON logs on stdout, the GC tuned for serving)."""
    return create_app(owns_process=True)
