"""Automatic rollback of canary routes (opt-in per route with ``rollback:``).

Each worker keeps a window of outcomes per canary route and backend, starting
when the route's current spec went live. Once both backends have at least
``min_requests`` in the window, Python is judged against Go on the same route:
its 5xx rate may exceed Go's by at most ``max_error_rate_increase`` and its tail
latency may be at most ``max_p99_ratio`` times Go's.

The tail is the p99 only once a window holds enough samples for one: with n
samples the p99 is the maximum while n < 100, so a single hiccup (a GC pause, a
cold cache) would roll a healthy route back. With fewer than ``MIN_TAIL``
samples above it, the highest quantile the window supports, ``1 - MIN_TAIL/n``,
is compared instead (the median at 20 requests, p90 at 100, p99 from 1000 on).
And a tail quantile of a few hundred samples is itself noisy, so Python counts
as slower only when it is *clearly* so: the lower end of its quantile's
confidence band (``Z`` standard deviations of the order statistic) above the
upper end of Go's, times the ratio.

The verdict is shared (gateway/ops/shared_state.py): through a file in
``GATEWAY_STATE_DIR`` (default: the metrics directory) for the workers of one
host, or through the table ``gateway_state`` when ``DATABASE_URL`` names a
PostgreSQL server, for every replica on every host. Each process adopts the
others' verdicts in :meth:`RollbackGuard.sync`, once a second; the reason is
logged, counted and shown on the status page.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.routing.config import RollbackSpec, RouteSpec

if TYPE_CHECKING:
    from gateway.ops.shared_state import SharedState

log = logging.getLogger("gateway.rollback")

WINDOW = 2000  # most recent outcomes kept per backend
MIN_TAIL = 10  # samples above a latency quantile before it may decide anything
Z = 2.0  # width of a quantile's confidence band, in standard deviations of its rank


def spec_key(spec: RouteSpec) -> str:
    """Identifies one live version of a route: a routes.yaml edit of it re-arms."""
    return f"{spec.prefix}|{spec.to}|{spec.percent:g}|{sorted(spec.methods or [])}|{spec.rollback!r}"


@dataclass
class Window:
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    errors: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    total: int = 0  # every outcome ever added (the deques stop growing at WINDOW)

    def add(self, status: int, seconds: float) -> None:
        self.total += 1
        self.latencies.append(seconds)
        self.errors.append(status >= 500 or status == 0)

    @property
    def count(self) -> int:
        return len(self.latencies)

    def error_rate(self) -> float:
        return sum(self.errors) / len(self.errors) if self.errors else 0.0

    def quantile(self, q: float, z: float = 0.0) -> float:
        """The q-quantile; with ``z``, that many standard deviations of its
        rank above (z > 0) or below (z < 0) it: an end of its confidence band."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        n = len(ordered)
        rank = int(n * q + z * math.sqrt(n * q * (1 - q)))
        return ordered[max(0, min(n - 1, rank))]


def tail_quantile(samples: int) -> float:
    """The highest quantile ``samples`` latencies support, capped at p99."""
    return min(0.99, 1 - MIN_TAIL / samples) if samples > 2 * MIN_TAIL else 0.5


def verdict(rule: RollbackSpec, go: Window, py: Window) -> str | None:
    """Why Python should be rolled back, or None (also None below the sample size)."""
    if go.count < rule.min_requests or py.count < rule.min_requests:
        return None
    go_err, py_err = go.error_rate(), py.error_rate()
    if py_err > go_err + rule.max_error_rate_increase:
        return (f"python error rate {py_err:.1%} > go {go_err:.1%} + {rule.max_error_rate_increase:.1%} "
                f"over {py.count}/{go.count} requests")
    q = tail_quantile(min(go.count, py.count))
    go_tail, py_tail = go.quantile(q, +Z), py.quantile(q, -Z)
    if go_tail > 0 and py_tail > go_tail * rule.max_p99_ratio:
        name = f"p{q * 100:.3g}"
        return (f"python {name} {py_tail * 1000:.1f} ms > {rule.max_p99_ratio:g} × go {name} "
                f"{go_tail * 1000:.1f} ms over {py.count}/{go.count} requests")
    return None


class RollbackGuard:
    def __init__(self, state: SharedState | None, metrics: Any = None):
        self.state = state  # where verdicts are shared; None: this process only
        self.metrics = metrics
        self.windows: dict[str, dict[str, Window]] = {}  # spec key → backend → window
        self.rolled_back: dict[str, dict[str, Any]] = {}  # prefix → {key, reason, at}
        self._unshared: list[tuple[str, dict[str, Any]]] = []  # verdicts sync() still has to write
        self._lock = threading.Lock()  # sync() runs in a worker thread

    def is_rolled_back(self, spec: RouteSpec) -> bool:
        entry = self.rolled_back.get(spec.prefix)
        return entry is not None and entry["key"] == spec_key(spec)

    def reason(self, spec: RouteSpec) -> dict[str, Any] | None:
        return self.rolled_back.get(spec.prefix) if self.is_rolled_back(spec) else None

    def record(self, spec: RouteSpec, backend: str, status: int, seconds: float) -> None:
        if spec.rollback is None or self.is_rolled_back(spec):
            return
        key = spec_key(spec)
        windows = self.windows.get(key)
        if windows is None:
            windows = self.windows[key] = {"go": Window(), "python": Window()}
        if status == 499:
            return  # the client left: says nothing about the backend
        window = windows[backend]
        window.add(status, seconds)
        if window.total % 10 == 0:  # judging costs a sort: not on every request
            why = verdict(spec.rollback, windows["go"], windows["python"])
            if why:
                self.roll_back(spec, why)

    def roll_back(self, spec: RouteSpec, why: str) -> None:
        entry = {"key": spec_key(spec), "reason": why, "at": time.time()}
        with self._lock:
            self.rolled_back[spec.prefix] = entry
            self._unshared.append((spec.prefix, entry))
        self.windows.pop(spec_key(spec), None)
        log.error("route %s: canary %g%% → go (automatic rollback): %s. Edit the route in routes.yaml to re-arm.",
                  spec.prefix, spec.percent, why)
        if self.metrics is not None:
            self.metrics.inc("gateway_canary_rollbacks_total", {"route": spec.prefix})
        if self.state is not None and self.state.immediate:
            self._share()  # a local file: the sibling workers see it at their next sync

    def _share(self) -> None:
        with self._lock:
            pending, self._unshared = self._unshared, []
        try:
            for prefix, entry in pending:
                self.state.put(prefix, entry)  # type: ignore[union-attr]
        except Exception:
            with self._lock:  # try again at the next sync
                self._unshared = pending + self._unshared
            raise

    def sync(self) -> None:
        """Share this process's verdicts and adopt the others' (about once a
        second, in a worker thread: the state may be a database)."""
        if self.state is None:
            return
        self._share()
        entries = self.state.read_all()
        if entries is None:
            return
        with self._lock:
            for prefix, entry in entries.items():
                if self.rolled_back.get(prefix, {}).get("key") == entry.get("key"):
                    continue
                if float(entry.get("at", 0)) < float(self.rolled_back.get(prefix, {}).get("at", 0)):
                    continue  # this process has a newer verdict of its own
                log.error("route %s rolled back to go by another gateway process: %s", prefix, entry.get("reason"))
                self.rolled_back[prefix] = entry
