"""Does the legacy backend answer, for the routes that still need it? (``gateway check``)

A table whose routes are all ``python`` (``default`` included) needs no Go
backend, and nothing is asked. Otherwise the same request as
``/_gateway/ready`` is made once (``GET legacy.url + legacy.ready_path``,
answered below 500 = up), and a backend that is gone or failing gives one
warning line naming it and the routes that would get 502s from it.
"""
from __future__ import annotations

import httpx

from gateway.routing.config import LegacyConfig
from gateway.routing.table import Route, RouteTable

READ_TIMEOUT = 5.0  # seconds for the answer once connected (legacy.connect_timeout bounds the connect)
NAMED = 5  # routes named in the warning; the rest are counted


def probe(legacy: LegacyConfig) -> str | None:
    """None when the backend answers ``ready_path`` below 500, else what went wrong."""
    url = legacy.url + legacy.ready_path
    timeout = httpx.Timeout(READ_TIMEOUT, connect=legacy.connect_timeout)
    try:
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not answer for the backend.
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return f"does not answer (GET {url}: {type(exc).__name__}: {exc or 'no detail'})"
    if response.status_code >= 500:
        return f"is not ready (GET {url} answered {response.status_code})"
    return None


def legacy_warning(table: RouteTable) -> str | None:
    """One line for ops, or None when no route needs Go or Go answers."""
    users = table.legacy_routes
    if not users:
        return None
    problem = probe(table.config.legacy)
    if problem is None:
        return None
    named = ", ".join(_name(r, table) for r in users[:NAMED])
    if len(users) > NAMED:
        named += f" and {len(users) - NAMED} more"
    return (f"warning: the legacy backend at {table.config.legacy.url} {problem}, but these still send requests "
            f"to it: {named}. They will answer 502 and /_gateway/ready 503 until it answers; or route them to "
            "python (every route and default: python retire it).")


def _name(route: Route, table: RouteTable) -> str:
    if route is table.default:
        return f"default: {route.state}"
    methods = f" [{route.spec.describe_methods()}]" if route.methods else ""
    return f"{route.prefix}{methods} ({route.spec.describe_state()})"
