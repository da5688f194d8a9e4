"""The one place the gateway learns which Python feature modules exist.

Each feature package under ``services/`` exposes a module-level ``SERVICE``: a
:class:`Service` naming the path prefixes it serves and the ASGI app that serves
them. The app receives the request's scope unchanged (full path, no prefix
stripping), so a feature's routes are written with the same paths as the Go
routes they replace. Services never import the gateway's internals.

The gateway enters a feature only through :meth:`Service.call`, which is where
the rules every feature gets are applied, whatever its app is built from: the
request body cap (services/body_limit.py) and dry-run mode for replayed writes.

One service may be the *fallback* (services/fallback): it declares no prefix
and answers the paths no other service serves the way the legacy answers
unknown paths. ``default: python`` (or a ``/`` route) hands requests to
:attr:`Registry.catch_all`, which gives each path to the service that owns it
and the rest to the fallback.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from services.body_limit import DEFAULT_MAX_BODY, call_with_body_limit

# Set by the registry while a shadow replay of a write runs: nothing may commit.
# The shared database layer (services.common.db) rolls back instead; a feature
# that writes anywhere else checks ``in_dry_run()``.
_DRY_RUN: ContextVar[bool] = ContextVar("gateway_dry_run", default=False)


def in_dry_run() -> bool:
    """True while this request is a shadowed write replayed to Python."""
    return _DRY_RUN.get()


# Who is making a request (e.g. the signed-in email), for sticky canaries.
Identity = Callable[[Scope], "str | None"]


@dataclass(frozen=True)
class Service:
    name: str
    prefixes: tuple[str, ...]
    app: ASGIApp
    # True when the feature commits nothing in a dry run (its writes go through
    # services.common.db, or it checks in_dry_run()); only such services may be
    # replayed shadowed writes (routes.yaml shadow.writes).
    dry_run: bool = False
    # Called once per worker at gateway startup (e.g. start a background poller).
    startup: Callable[[], Any] | None = None
    # Called once per worker at a graceful stop; may be async (close clients,
    # dispose engines, stop pollers).
    shutdown: Callable[[], Awaitable[None] | None] | None = None
    # A small JSON-able dict for /_gateway/health (e.g. pipeline lag). Must not block.
    status: Callable[[], dict[str, Any]] | None = None
    # Who is signed in, for sticky canaries; at most one service provides it.
    identity: Identity | None = None
    # Prefixes whose path tail is a secret (/api_keys/<key>): cut from access logs.
    secret_paths: tuple[str, ...] = ()
    # The one service answering paths no other service serves (declares no
    # prefixes); reached only through Registry.catch_all.
    fallback: bool = False

    async def call(self, scope: Scope, receive: Receive, send: Send, *, dry_run: bool = False,
                   max_body: int = DEFAULT_MAX_BODY) -> None:
        """Run the feature for one request.

        ``max_body``: the most body bytes the feature may read; past it the
        client gets 413 and the feature's own answer is dropped (the gateway
        passes the route's limit here). ``dry_run``: a replayed write, nothing
        may commit. The gateway calls every service through here, so both hold
        for every feature, however its app is built."""
        token = _DRY_RUN.set(dry_run)
        try:
            await call_with_body_limit(self.app, scope, receive, send, max_body)
        finally:
            _DRY_RUN.reset(token)


def _under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or below it on a segment boundary."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Registry:
    services: Mapping[str, Service]

    @property
    def identity(self) -> Identity | None:
        """The one identity provider, if a service declares it."""
        return next((s.identity for s in self.services.values() if s.identity is not None), None)

    @property
    def secret_paths(self) -> tuple[str, ...]:
        return tuple(p for s in self.services.values() for p in s.secret_paths)

    def owner_of(self, prefix: str) -> Service | None:
        """The service whose longest declared prefix covers ``prefix``, if any."""
        best: tuple[int, Service] | None = None
        for service in self.services.values():
            for own in service.prefixes:
                if _under(prefix, own) and (best is None or len(own) > best[0]):
                    best = (len(own), service)
        return best[1] if best else None

    @cached_property
    def fallback(self) -> Service | None:
        """The service that answers paths no other service serves, if any."""
        return next((s for s in self.services.values() if s.fallback), None)

    @cached_property
    def catch_all(self) -> Service | None:
        """Every path to Python: each to the service that owns it, the rest to
        the fallback. What ``default: python`` (or a ``/`` route) serves; None
        without a fallback service."""
        fallback = self.fallback
        if fallback is None:
            return None
        return Service(name=CATCH_ALL, prefixes=("/",), app=_PathDispatch(self.services, fallback.app))

    def service_for(self, prefix: str) -> Service | None:
        """The service a ``python`` route at ``prefix`` hands its requests to."""
        owner = self.owner_of(prefix)
        if owner is None and prefix == "/":
            return self.catch_all
        return owner

    def serves(self, prefix: str) -> bool:
        return self.service_for(prefix) is not None

    def dry_run_ok(self, prefix: str) -> bool:
        service = self.owner_of(prefix)
        return service is not None and service.dry_run



CATCH_ALL = "(default)"  # the catch-all's name in logs and /_gateway/routes


class _PathDispatch:
    """ASGI: the app of the service whose longest prefix covers the path, else the fallback.

    Walks the path's own prefixes with one dict probe each, as the route table does."""

    def __init__(self, services: Mapping[str, Service], fallback: ASGIApp) -> None:
        self._apps = {prefix: s.app for s in services.values() if not s.fallback for prefix in s.prefixes}
        self._fallback = fallback

    def app_for(self, path: str) -> ASGIApp:
        candidate = path or "/"
        while True:
            app = self._apps.get(candidate)
            if app is not None:
                return app
            if candidate == "/":
                return self._fallback
            cut = candidate.rfind("/")
            candidate = candidate[:cut] if cut > 0 else "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app_for(scope["path"])(scope, receive, send)


def discover(packages: Iterable[str] = ("services",)) -> Registry:
    """Import every subpackage of each package that defines ``SERVICE``.

    By default that is ``services``; the gateway adds the packages named in
    env ``GATEWAY_SERVICE_PACKAGES`` (a team's own packages, or test doubles).
    """
    found: dict[str, Service] = {}
    for package in packages:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.ispkg:
                continue
            module = importlib.import_module(f"{package}.{info.name}")
            service = getattr(module, "SERVICE", None)
            if isinstance(service, Service):
                if service.name in found:
                    raise ValueError(f"two service modules are named {service.name!r}: "
                                     f"{found[service.name].app!r} and {module.__name__}")
                found[service.name] = service
    fallbacks = sorted(s.name for s in found.values() if s.fallback)
    if len(fallbacks) > 1:
        raise ValueError(f"services {', '.join(fallbacks)} are each a fallback; paths no service serves "
                         "need exactly one answer")
    bad = sorted(s.name for s in found.values() if s.fallback and s.prefixes)
    if bad:
        raise ValueError(f"fallback service {bad[0]!r} declares prefixes; a fallback serves only what no "
                         "other service does")
    providers = sorted(s.name for s in found.values() if s.identity is not None)
    if len(providers) > 1:
        raise ValueError(f"services {', '.join(providers)} each declare an identity provider; "
                         "sticky canaries need exactly one")
    return Registry(found)
