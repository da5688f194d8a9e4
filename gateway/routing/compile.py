"""Bind a validated config to its backends: the route table the gateway serves.

Each route carries both backends it may need: the legacy forwarder and the
Python service that owns its prefix (``shadow`` and ``canary`` choose between
them per request).
"""
from __future__ import annotations

from starlette.types import ASGIApp

from services.registry import Registry

from .config import GatewayConfig, RouteSpec
from .table import Route, RouteTable


def compile_table(config: GatewayConfig, registry: Registry, go: ASGIApp) -> RouteTable:
    """The table for ``config``: ``go`` answers for the legacy backend."""

    def route_for(spec: RouteSpec) -> Route:
        service = registry.owner_of("/" if spec.is_default else spec.prefix)
        if spec.to != "go" and service is None:  # validation prevents this
            raise ValueError(f"no Python service serves {spec.prefix!r}")
        return Route(spec, go, service)

    return RouteTable(config, [route_for(spec) for spec in config.routes], route_for(config.default_route))
