"""Bind a validated config to its backends: the route table the gateway serves.

Each route gets the ASGI app of its state (the legacy forwarder for ``go``,
the owning service for ``python``) plus both backends, which ``shadow`` and
``canary`` routes choose between per request.
"""
from __future__ import annotations

from starlette.types import ASGIApp

from services.registry import Registry

from .config import GatewayConfig, RouteSpec
from .table import Route, RouteTable


def compile_table(config: GatewayConfig, registry: Registry, go: ASGIApp) -> RouteTable:
    """The table for ``config``: ``go`` answers for the legacy backend."""

    def route_for(prefix: str, target: str, spec: RouteSpec | None) -> Route:
        service = registry.owner_of(prefix if prefix != "*" else "/")
        python_app = service.app if service is not None else None
        if target != "go" and python_app is None:  # validation prevents this
            raise ValueError(f"no Python service serves {prefix!r}")
        app = python_app if target == "python" else go
        return Route(
            prefix, target, spec.methods if spec else None, app,
            service.name if service else None, spec.line if spec else 0,
            go=go, python=python_app, spec=spec,
        )

    routes = [route_for(spec.prefix, spec.to, spec) for spec in config.routes]
    return RouteTable(config, routes, route_for("*", config.default, None))
