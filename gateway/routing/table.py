"""The immutable route table: longest prefix on segment boundaries, then method.

A table is built once per valid ``routes.yaml`` and never mutated; the reloader
swaps the whole object. Lookup walks the path's own prefixes from longest to
shortest with one dict probe each, so its cost does not grow with the number of
routes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .config import GatewayConfig, RouteSpec
from .paths import is_under


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # "*" for the default route
    target: str  # the route's state: "go" | "python" | "shadow" | "canary"
    methods: frozenset[str] | None
    app: Any  # the ASGI app for plain go/python routes (the forwarder or the service)
    service: str | None = None  # the Python service that owns the prefix, if any
    line: int = 0
    go: Any = None  # the legacy forwarder
    python: Any = None  # the owning service's ASGI app (None when no service owns it)
    spec: RouteSpec | None = None  # percent, shadow, diff, rollback settings

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix,
            "target": self.target,
            "methods": sorted(self.methods) if self.methods else None,
            "service": self.service,
            "line": self.line or None,
        }
        if self.target == "canary" and self.spec is not None:
            out["percent"] = self.spec.percent
            out["rollback"] = asdict(self.spec.rollback) if self.spec.rollback else None
        if self.target == "shadow" and self.spec is not None:
            out["shadow"] = asdict(self.spec.shadow)
            out["diff"] = asdict(self.spec.diff)
        return out


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    reason: str


class RouteTable:
    def __init__(self, config: GatewayConfig, routes: list[Route], default: Route):
        self.config = config
        self.version = config.version
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=lambda r: (-len(r.prefix), r.prefix)))
        self.default = default
        by_prefix: dict[str, list[Route]] = {}
        for route in self.routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        # Method-restricted entries are tried before the catch-all of the same prefix.
        self._by_prefix: Mapping[str, tuple[Route, ...]] = {
            p: tuple(sorted(rs, key=lambda r: r.methods is None)) for p, rs in by_prefix.items()
        }

    def lookup(self, path: str, method: str) -> Route:
        by_prefix = self._by_prefix
        candidate = path
        while True:
            routes = by_prefix.get(candidate)
            if routes is not None:
                for route in routes:
                    if route.methods is None or method in route.methods:
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
            reason = f"no route prefix covers {method} {path}; the default target '{route.target}' serves it"
        else:
            reason = f"longest matching prefix {route.prefix!r} (line {route.line})"
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
            "legacy": self.config.legacy.url,
            "default": self.default.target,
            "routes": [r.describe() for r in self.routes],
        }

    def targets_by_prefix(self) -> dict[tuple[str, str], str]:
        """(prefix, methods) → target: what a reload compares to log changes."""
        out = {(r.prefix, ",".join(sorted(r.methods)) if r.methods else "*"): r.target for r in self.routes}
        out[("(default)", "*")] = self.default.target
        return out


def _methods(route: Route) -> str:
    return ", ".join(sorted(route.methods)) if route.methods else "*"
