"""Which route serves a request, why, and which backend a given user gets.

One answer for the CLI (``gateway explain``) and the admin surface
(``/_gateway/explain``), computed from the very table the gateway serves and by
the very function the request pipeline calls (``RouteTable.resolve``): the
target is taken as a client sends it — raw path, percent-escapes and all,
optionally with ``?query`` — and split the way uvicorn splits it, so explain
and routing cannot disagree (``/users%3Fx%3D1`` is one segment, not
``/users`` with a query; ``/_gateway/health`` is the gateway's own).
"""
from __future__ import annotations

from typing import Any

from gateway.migration.canary import CanaryChooser
from gateway.migration.rollback import RollbackGuard
from gateway.routing.paths import BadPath, split_target
from gateway.routing.table import Route, RouteTable

ADMIN_REASON = "/_gateway/ is the gateway's own surface: the gateway answers it, it is never routed to a backend"


def explain_target(table: RouteTable, method: str, target: str, user: str | None = None,
                   rollbacks: RollbackGuard | None = None) -> dict[str, Any]:
    """What the gateway does with ``method target``: rejected, admin, or which route and backend."""
    method = method.upper()
    head: dict[str, Any] = {"method": method, "target": target, "table_version": table.version}
    try:
        raw_path, query = split_target(target.encode("utf-8"))
    except BadPath as exc:
        return {**head, **_rejected(str(exc))}
    where = table.resolve(method, raw_path, query)
    if where.rejected is not None:
        return {**head, "path": None, **_rejected(where.rejected)}
    if where.route is None:
        return {**head, "path": where.path, "route": None, "state": "admin", "backend": "gateway",
                "reason": ADMIN_REASON}
    return {**head, "path": where.path, **_routed(table, where.route, method, where.path or "", user, rollbacks)}


def _rejected(why: str) -> dict[str, Any]:
    return {"route": None, "state": None, "backend": "gateway", "status": 400, "reason": why}


def _routed(table: RouteTable, route: Route, method: str, path: str, user: str | None,
            rollbacks: RollbackGuard | None) -> dict[str, Any]:
    match = table.explain(path, method)
    out: dict[str, Any] = {"route": route.describe(), "state": route.state, "reason": match.reason}
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
