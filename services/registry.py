"""The one place the gateway learns which Python feature modules exist.

Each feature package under ``services/`` exposes a module-level ``SERVICE``: a
:class:`Service` naming the path prefixes it serves and the ASGI app that serves
them. The app receives the request's scope unchanged (full path, no prefix
stripping), so a feature's routes are written with the same paths as the Go
routes they replace. Services never import the gateway's internals.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Service:
    name: str
    prefixes: tuple[str, ...]
    app: ASGIApp
    # True when the app honours scope["gateway.dry_run"] (shadowed writes must
    # not commit); only such services may shadow unsafe methods.
    dry_run: bool = False
    # Called once per worker at gateway startup (e.g. start a background poller).
    startup: Callable[[], Any] | None = None
    # A small JSON-able dict for /_gateway/health (e.g. pipeline lag). Must not block.
    status: Callable[[], dict[str, Any]] | None = None


# Who is making a request (e.g. the signed-in email), for sticky canaries.
Identity = Callable[[Scope], "str | None"]


def _under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or below it on a segment boundary."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Registry:
    services: Mapping[str, Service]
    identity: Identity | None = None  # from the first module that exports IDENTITY

    def owner_of(self, prefix: str) -> Service | None:
        """The service whose longest declared prefix covers ``prefix``, if any."""
        best: tuple[int, Service] | None = None
        for service in self.services.values():
            for own in service.prefixes:
                if _under(prefix, own) and (best is None or len(own) > best[0]):
                    best = (len(own), service)
        return best[1] if best else None

    def serves(self, prefix: str) -> bool:
        return self.owner_of(prefix) is not None

    def dry_run_ok(self, prefix: str) -> bool:
        service = self.owner_of(prefix)
        return service is not None and service.dry_run



def discover(packages: Iterable[str] | None = None) -> Registry:
    """Import every subpackage of each package that defines ``SERVICE``.

    By default that is ``services``; env ``GATEWAY_SERVICE_PACKAGES`` (a comma
    list of importable packages) adds a team's own packages, or test doubles.
    """
    if packages is None:
        extra = os.environ.get("GATEWAY_SERVICE_PACKAGES", "")
        packages = ["services", *(p.strip() for p in extra.split(",") if p.strip())]
    found: dict[str, Service] = {}
    identity: Identity | None = None
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
            identity = identity or getattr(module, "IDENTITY", None)
    return Registry(found, identity)
