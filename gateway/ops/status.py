"""The migration status, per route: state, traffic share, parity, errors, latency.

Built from the metrics every worker publishes (so it covers the whole gateway),
the live table, the rollback verdicts and when each route last changed. Served
as JSON (``/_gateway/status.json``) and as the HTML page (``/_gateway/status``,
rendered by status_page.py).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.migration.rollback import RollbackGuard
from gateway.routing.table import Route, RouteTable

from .metrics import Totals, quantile


def _backend_stats(totals: Totals, prefix: str, backend: str) -> dict[str, Any] | None:
    classes = {k: v for (r, b, k), v in totals.requests.items() if r == prefix and b == backend}
    return _stats(classes, totals.latency.get((prefix, backend)))


def _shadow_stats(totals: Totals, prefix: str) -> dict[str, Any] | None:
    classes = {k: v for (r, k), v in totals.shadow_replies.items() if r == prefix}
    return _stats(classes, totals.shadow_latency.get(prefix))


def _stats(classes: dict[str, float], hist: list[float] | None) -> dict[str, Any] | None:
    count = sum(classes.values())
    if not count:
        return None
    errors = classes.get("5xx", 0) + classes.get("aborted", 0)
    p50 = quantile(hist, 0.5) if hist else None
    p99 = quantile(hist, 0.99) if hist else None
    return {
        "requests": int(count),
        "error_rate": errors / count,
        "p50_ms": p50 * 1000 if p50 is not None else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
    }


def _route_status(totals: Totals, route: Route, rollbacks: RollbackGuard, changed: float | None,
                  now: float) -> dict[str, Any]:
    prefix = route.prefix
    backends = {}
    for name, stats in (("go", _backend_stats(totals, prefix, "go")),
                        ("python", _backend_stats(totals, prefix, "python")),
                        ("python (shadow)", _shadow_stats(totals, prefix))):
        if stats:
            backends[name] = stats
    served = {b: backends.get(b, {}).get("requests", 0) for b in ("go", "python")}
    total = sum(served.values())
    shadowed = totals.counter("gateway_shadow_requests_total", route=prefix)
    matched = totals.counter("gateway_shadow_matches_total", route=prefix)
    parity = None
    if shadowed:
        parity = {"shadowed": int(shadowed), "matched": int(matched), "rate": matched / shadowed,
                  "dropped": int(totals.counter("gateway_shadow_dropped_total", route=prefix)),
                  "python_errors": int(totals.counter("gateway_shadow_python_errors_total", route=prefix))}
    diffs = [
        (dict(key)["field"], v) for key, v in totals.series("gateway_shadow_differences_total").items()
        if dict(key).get("route") == prefix
    ]
    diffs.sort(key=lambda item: -item[1])
    samples = totals.samples.get(prefix, {})
    notes: list[str] = []
    spec = route.spec
    state = route.state
    if state == "canary":
        rolled = rollbacks.reason(spec)
        if rolled:
            at = datetime.fromtimestamp(rolled["at"], UTC).strftime("%H:%M:%S UTC")
            notes.append(f"automatically rolled back to go at {at}: {rolled['reason']}")
            state = "go (rolled back)"
        elif spec.rollback:
            r = spec.rollback
            notes.append(f"auto-rollback armed: error rate +{r.max_error_rate_increase:.0%}, "
                         f"p99 ×{r.max_p99_ratio:g}, min {r.min_requests} requests per backend")
    return {
        "prefix": "(default)" if spec.is_default else prefix,
        "methods": sorted(route.methods) if route.methods else None,
        "state": state,
        "canary_percent": spec.percent if route.state == "canary" else None,
        "share": {b: (n / total if total else 0.0) for b, n in served.items()},
        "parity": parity,
        "backends": backends,
        "last_change_s": (now - changed) if changed else None,
        "notes": notes,
        "top_differences": [{"field": f, "count": int(n), "sample": samples.get(f, "")} for f, n in diffs[:5]],
    }


def status_data(totals: Totals, table: RouteTable, rollbacks: RollbackGuard,
                last_change: Mapping[str, float], config_error: str | None = None) -> dict[str, Any]:
    """The status of every route of ``table`` from the summed metrics."""
    now = time.time()
    routes = [_route_status(totals, r, rollbacks, last_change.get(r.prefix), now)
              for r in (*table.routes, table.default)]
    return {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "table_version": table.version,
        "config_error": config_error,
        "routes": routes,
    }
