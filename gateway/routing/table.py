"""The immutable route table: longest prefix on segment boundaries, then method.

A table is built once per valid ``routes.yaml`` and never mutated; the reloader
swaps the whole object. Lookup walks the path's own prefixes from longest to
shortest with one dict probe each, so its cost does not grow with the number of
routes.

Words: a route's *state* (``go``, ``python``, ``shadow``, ``canary``) is what
routes.yaml says; the *backend* is who answers one request (``go``,
``python``, or the ``gateway`` itself).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.redact import redact_url
from services.registry import Service

from .config import RESERVED_PREFIX, GatewayConfig, RouteSpec
from .paths import BadPath, is_admin_path, is_under, match_path
from .readings import check_readings

if TYPE_CHECKING:
    from gateway.edge.cors import CorsPolicy
    from gateway.upstream.forwarder import LegacyForwarder


# Every state but ``python`` sends requests to the legacy backend: ``shadow``
# serves Go's answer, ``canary`` sends some users there (and all of them after
# a rollback).
LEGACY_STATES = frozenset({"go", "shadow", "canary"})


@dataclass(frozen=True, slots=True)
class Route:
    spec: RouteSpec  # what routes.yaml says (the default route's prefix is "*")
    go: LegacyForwarder  # the legacy forwarder
    service: Service | None  # the Python feature that owns the prefix, if any
    max_body: int = 1 << 20  # request body bytes into Python: spec.max_body, else limits.python_body

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    @property
    def state(self) -> str:
        return self.spec.to

    @property
    def methods(self) -> frozenset[str] | None:
        return self.spec.methods

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {
            "prefix": spec.prefix,
            "state": spec.to,
            "methods": sorted(spec.methods) if spec.methods else None,
            "service": self.service.name if self.service else None,
            "line": spec.line or None,
        }
        if spec.to == "canary":
            out["percent"] = spec.percent
            out["rollback"] = spec.rollback.model_dump() if spec.rollback else None
        if spec.to == "shadow":
            out["shadow"] = spec.shadow.model_dump()
            out["diff"] = spec.diff.model_dump()
        return out


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    reason: str


RESOLVED_KEPT = 4096  # resolve() answers a table remembers...
RESOLVED_PATH_MAX = 256  # ...for raw paths up to this long: ~3 MiB a table at most (measured), whatever clients send


class Resolution(NamedTuple):
    """What the gateway does with one request: the single answer the request
    pipeline (gateway/app.py) and ``explain`` both take, so they cannot drift."""

    path: str | None  # the match path (segments decoded, %2F kept); None when rejected
    route: Route | None  # who serves it; None for the admin surface and for a rejected path
    rejected: str | None = None  # why the path is answered 400

    @property
    def admin(self) -> bool:
        """The gateway's own surface answers (``/_gateway/...``); never routed."""
        return self.route is None and self.rejected is None


class RouteTable:
    def __init__(self, config: GatewayConfig, routes: list[Route], default: Route,
                 cors: CorsPolicy | None = None):
        self.config = config
        self.version = config.version
        self.cors = cors  # the edge CORS policy of this table (None: the gateway adds no CORS)
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=lambda r: (-len(r.prefix), r.prefix)))
        self.default = default
        # The routes (the default included, last) that still need the legacy
        # backend; empty once Go is retired. Readiness and `gateway check` ask.
        self.legacy_routes: tuple[Route, ...] = tuple(
            r for r in (*self.routes, default) if r.state in LEGACY_STATES)
        by_prefix: dict[str, list[Route]] = {}
        for route in self.routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        self._resolved: dict[tuple[str, bytes], Resolution] = {}  # see resolve()
        # Method-restricted entries are tried before the catch-all of the same
        # prefix; the methods ride along so a lookup touches no spec.
        self._by_prefix: Mapping[str, tuple[tuple[frozenset[str] | None, Route], ...]] = {
            p: tuple((r.methods, r) for r in sorted(rs, key=lambda r: r.methods is None))
            for p, rs in by_prefix.items()
        }

    def resolve(self, method: str, raw_path: bytes, query: bytes = b"") -> Resolution:
        """The raw path and query as uvicorn hands them over → rejected, admin, or a route.

        Remembered per (method, raw path) for this table (a table never
        changes; a reload makes a new one): clients ask for the same few paths
        over and over, and the answer is a pure function of the two and of
        whether the query is ASCII, the query's one effect. At most
        ``RESOLVED_KEPT`` answers are kept, for paths up to
        ``RESOLVED_PATH_MAX`` bytes: past that the memory starts afresh, so
        paths that each come once (ids in them) can't grow it, nor long ones
        (the edge lets a request line reach 8 KiB) make it weigh more."""
        if not query.isascii() or len(raw_path) > RESOLVED_PATH_MAX:
            return self._resolve(method, raw_path, query)
        key = (method, raw_path)
        where = self._resolved.get(key)
        if where is None:
            where = self._resolve(method, raw_path, query)
            if len(self._resolved) >= RESOLVED_KEPT:
                self._resolved.clear()
            self._resolved[key] = where
        return where

    def _resolve(self, method: str, raw_path: bytes, query: bytes) -> Resolution:
        try:
            path = match_path(raw_path, query)
            # Each backend decodes differently: all must agree on the route.
            # find(), not ``in``: see match_path (no TypeError raised and cleared).
            if raw_path.find(b"%") >= 0:
                check_readings(raw_path, path, self, method, RESERVED_PREFIX)
        except BadPath as exc:
            return Resolution(None, None, str(exc))
        if is_admin_path(path):
            return Resolution(path, None)
        return Resolution(path, self.lookup(path, method))

    def lookup(self, path: str, method: str) -> Route:
        by_prefix = self._by_prefix
        candidate = path
        while True:
            routes = by_prefix.get(candidate)
            if routes is not None:
                for methods, route in routes:
                    if methods is None or method in methods:
                        return route
            if candidate == "/":
                return self.default
            cut = candidate.rfind("/")
            candidate = candidate[:cut] if cut > 0 else "/"

    def explain(self, path: str, method: str) -> Match:
        """Which route serves ``method path`` and why, for humans (CLI, admin)."""
        route = self.lookup(path, method)
        won = len(route.prefix) if route is not self.default else 0
        skipped = [r for r in self.routes if is_under(path, r.prefix) and len(r.prefix) > won]
        if route is self.default:
            reason = f"no route prefix covers {method} {path}; the default state '{route.state}' serves it"
        else:
            reason = f"longest matching prefix {route.prefix!r} (line {route.spec.line})"
            if route.methods:
                reason += f", {method} is in its methods [{_methods(route)}]"
        if skipped:
            reason += "; longer prefixes skipped because they do not list " + method + ": " + ", ".join(
                f"{r.prefix} [{_methods(r)}]" for r in skipped
            )
        return Match(route, reason)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.config.source,
            "legacy": redact_url(self.config.legacy.url),
            "default": self.default.state,
            "legacy_in_use": bool(self.legacy_routes),
            "routes": [r.describe() for r in self.routes],
        }

    def states_by_prefix(self) -> dict[tuple[str, str], str]:
        """(prefix, methods) → state: what a reload compares to log changes."""
        out = {(r.prefix, r.spec.describe_methods()): r.state for r in self.routes}
        out[("(default)", "*")] = self.default.state
        return out


def _methods(route: Route) -> str:
    return ", ".join(sorted(route.methods)) if route.methods else "*"
