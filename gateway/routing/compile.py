"""Bind a validated config to its backends: the route table the gateway serves.

Each route carries both backends it may need: the legacy forwarder and the
Python service that owns its prefix (``shadow`` and ``canary`` choose between
them per request). The table also carries its ``cors:`` policy, so a request
answers CORS by the same table it is routed by, and a reload changes both.

Pure: builds objects only, so a reload may compile in its worker thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.edge.cors import CorsPolicy
from services.registry import Registry

from .config import GatewayConfig, RouteSpec
from .table import Route, RouteTable

if TYPE_CHECKING:  # the forwarder imports the routing package at run time
    from gateway.upstream.forwarder import LegacyForwarder


def compile_table(config: GatewayConfig, registry: Registry, go: LegacyForwarder) -> RouteTable:
    """The table for ``config``: ``go`` answers for the legacy backend."""

    def route_for(spec: RouteSpec) -> Route:
        # "/" (the default, or a "/" route) is every path: registry.catch_all
        # gives each to the service that owns it and the rest to the fallback.
        service = registry.service_for("/" if spec.is_default else spec.prefix)
        if spec.to != "go" and service is None:  # validation prevents this
            raise ValueError(f"no Python service serves {spec.prefix!r}")
        return Route(spec, go, service, spec.max_body or config.limits.python_body)

    cors = CorsPolicy.from_config(config.cors) if config.cors is not None else None
    return RouteTable(config, [route_for(spec) for spec in config.routes], route_for(config.default_route), cors)
