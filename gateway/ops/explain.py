"""Which route serves a request, why, and which backend a given user gets.

One answer for the CLI (``gateway explain``) and the admin surface
(``/_gateway/explain``), computed from the very table the gateway serves.
"""
from __future__ import annotations

from typing import Any

from gateway.migration.canary import CanaryChooser
from gateway.migration.rollback import RollbackGuard

from gateway.routing.table import RouteTable


def explain_dict(table: RouteTable, method: str, path: str, user: str | None = None,
                 rollbacks: RollbackGuard | None = None) -> dict[str, Any]:
    """Which route wins, its state, and which backend (this user) would get."""
    match = table.explain(path, method)
    route = match.route
    out: dict[str, Any] = {
        "method": method,
        "path": path,
        "route": route.describe(),
        "state": route.state,
        "reason": match.reason,
        "table_version": table.version,
    }
    if route.state in ("go", "python"):
        out["backend"] = route.state
    elif route.state == "shadow":
        out["backend"] = "go"
        out["note"] = "the client gets Go's answer; the request is replayed to Python and compared"
    else:
        rolled = rollbacks.reason(route.spec) if rollbacks is not None else None
        if rolled:
            out["backend"] = "go"
            out["note"] = f"automatically rolled back to go: {rolled['reason']}"
        elif user:
            out["backend"] = CanaryChooser.for_user(route.prefix, route.spec.percent, user)
            out["user"] = user
        else:
            out["backend"] = f"python for {route.spec.percent:g}% of users, go for the rest (give a user to know which)"
    return out
