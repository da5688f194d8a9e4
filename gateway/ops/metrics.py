"""Per-route metrics in Prometheus text format, aggregated across workers.

Each worker counts in its own memory (a few dict increments per request) and
publishes a snapshot file to a directory shared by the workers of one
``gateway serve`` (``GATEWAY_METRICS_DIR``), once a second and whenever it
answers ``/_gateway/metrics``. The scrape sums every worker's latest snapshot,
so the numbers cover the whole gateway whichever worker the scraper reaches.
Snapshots of workers that exited are kept, like prometheus_client's
multiprocess mode, so counters never go backwards.
"""
from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, directory: str | None = None):
        self.directory = Path(directory) if directory else None
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)  # (route, backend, class)
        self.latency: dict[tuple[str, str], list[float]] = {}  # (route, backend) → bucket counts + [sum, count]
        # Shadow replays served nobody: kept apart from the requests above.
        self.shadow_replies: dict[tuple[str, str], int] = defaultdict(int)  # (route, class)
        self.shadow_latency: dict[str, list[float]] = {}  # route → bucket counts + [sum, count]
        self.upstream_errors: dict[tuple[str, str], int] = defaultdict(int)  # (route, kind)
        self.reloads: dict[str, int] = defaultdict(int)  # outcome → count
        self.extra: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(lambda: defaultdict(float))
        self.samples: dict[str, dict[str, str]] = defaultdict(dict)  # route → field → latest rendered diff

    # -- recording (hot path) ------------------------------------------------
    def observe(self, route: str, backend: str, status: int, seconds: float) -> None:
        """One request answered: by which backend, with which status, how fast."""
        self.requests[(route, backend, _status_class(status))] += 1
        _add(self.latency, (route, backend), seconds)

    def observe_shadow(self, route: str, status: int, seconds: float) -> None:
        """One shadow replay to Python finished (0 = it raised or timed out)."""
        self.shadow_replies[(route, _status_class(status))] += 1
        _add(self.shadow_latency, route, seconds)

    def upstream_error(self, route: str, kind: str) -> None:
        self.upstream_errors[(route, kind)] += 1

    def reload(self, outcome: str) -> None:
        self.reloads[outcome] += 1

    def inc(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        """A counter for features beyond plain routing (shadow, canary, ...)."""
        self.extra[name][tuple(sorted(labels.items()))] += value

    def sample(self, route: str, field: str, text: str, keep: int = 20) -> None:
        """Keep the latest readable diff per (route, field), a bounded number per route."""
        per_route = self.samples[route]
        if field in per_route or len(per_route) < keep:
            per_route[field] = text[:4000]

    # -- publishing ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [[*k, v] for k, v in self.requests.items()],
            "latency": [[*k, v] for k, v in self.latency.items()],
            "shadow_replies": [[*k, v] for k, v in self.shadow_replies.items()],
            "shadow_latency": [[k, v] for k, v in self.shadow_latency.items()],
            "upstream_errors": [[*k, v] for k, v in self.upstream_errors.items()],
            "reloads": dict(self.reloads),
            "extra": {n: [[list(map(list, k)), v] for k, v in series.items()] for n, series in self.extra.items()},
            "samples": {route: dict(fields) for route, fields in self.samples.items()},
        }

    def publish(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"worker-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)

    def collect(self) -> list[dict[str, Any]]:
        """Every worker's latest snapshot (just this one without a shared dir)."""
        self.publish()
        if self.directory is None:
            return [self.snapshot()]
        out = []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a worker mid-write or gone: skip this scrape
        return out

def _status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "aborted"


def _add(histograms: dict[Any, list[float]], key: Any, seconds: float) -> None:
    hist = histograms.get(key)
    if hist is None:
        hist = histograms[key] = [0.0] * (len(BUCKETS) + 3)
    hist[bisect_left(BUCKETS, seconds)] += 1  # the last slot before sum/count is +Inf
    hist[-2] += seconds
    hist[-1] += 1


def _labels(names: Iterable[str], values: Iterable[Any]) -> str:
    inner = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values))
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Totals:
    """Every worker's snapshot summed."""

    requests: dict[tuple, float] = field(default_factory=lambda: defaultdict(float))
    latency: dict[tuple, list[float]] = field(default_factory=dict)
    shadow_replies: dict[tuple, float] = field(default_factory=lambda: defaultdict(float))
    shadow_latency: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[tuple, float] = field(default_factory=lambda: defaultdict(float))
    reloads: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    extra: dict[str, dict[tuple, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    samples: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    def counter(self, name: str, **labels: str) -> float:
        """Sum of an extra counter over the series matching ``labels``."""
        want = set(labels.items())
        return sum(v for key, v in self.extra.get(name, {}).items() if want <= set(key))

    def series(self, name: str) -> dict[tuple, float]:
        return self.extra.get(name, {})


def aggregate(snapshots: list[dict[str, Any]]) -> Totals:
    t = Totals()
    for snap in snapshots:
        for route, backend, klass, v in snap.get("requests", []):
            t.requests[(route, backend, klass)] += v
        for route, backend, hist in snap.get("latency", []):
            _sum_into(t.latency, (route, backend), hist)
        for route, klass, v in snap.get("shadow_replies", []):
            t.shadow_replies[(route, klass)] += v
        for route, hist in snap.get("shadow_latency", []):
            _sum_into(t.shadow_latency, route, hist)
        for route, kind, v in snap.get("upstream_errors", []):
            t.errors[(route, kind)] += v
        for outcome, v in snap.get("reloads", {}).items():
            t.reloads[outcome] += v
        for name, series in snap.get("extra", {}).items():
            for labels, v in series:
                t.extra[name][tuple(tuple(p) for p in labels)] += v
        for route, fields in snap.get("samples", {}).items():
            t.samples[route].update(fields)
    return t


def _sum_into(histograms: dict[Any, list[float]], key: Any, hist: list[float]) -> None:
    acc = histograms.setdefault(key, [0.0] * len(hist))
    for i, v in enumerate(hist):
        acc[i] += v


def quantile(hist: list[float], q: float) -> float | None:
    """Approximate quantile (seconds) from histogram counts: the bucket's upper bound."""
    total = hist[-1]
    if not total:
        return None
    rank, seen = q * total, 0.0
    for bound, count in zip((*BUCKETS, BUCKETS[-1] * 2), hist[:-2]):
        seen += count
        if seen >= rank:
            return bound
    return BUCKETS[-1] * 2


def _histogram(name: str, labels: tuple[str, ...], series: Iterable[tuple[tuple[str, ...], list[float]]]) -> list[str]:
    lines = []
    for values, hist in series:
        cumulative = 0.0
        for bound, count in zip((*BUCKETS, float("inf")), hist[:-2]):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f"{name}_bucket{_labels((*labels, 'le'), (*values, le))} {cumulative:g}")
        lines.append(f"{name}_sum{_labels(labels, values)} {hist[-2]:.6f}")
        lines.append(f"{name}_count{_labels(labels, values)} {hist[-1]:g}")
    return lines


def render(snapshots: list[dict[str, Any]], gauges: dict[str, tuple[str, float]] | None = None) -> str:
    """Sum the workers' snapshots into Prometheus text exposition format."""
    t = aggregate(snapshots)
    lines = [
        "# HELP gateway_requests_total Requests answered, by route prefix, backend and status class.",
        "# TYPE gateway_requests_total counter",
    ]
    for (route, backend, klass), v in sorted(t.requests.items()):
        lines.append(f"gateway_requests_total{_labels(('route', 'backend', 'status'), (route, backend, klass))} {v:g}")
    lines += [
        "# HELP gateway_request_duration_seconds Time from request start to the last body byte sent.",
        "# TYPE gateway_request_duration_seconds histogram",
    ]
    lines += _histogram("gateway_request_duration_seconds", ("route", "backend"), sorted(
        ((route, backend), hist) for (route, backend), hist in t.latency.items()))
    lines += [
        "# HELP gateway_shadow_replies_total Shadow replays answered by Python (served nobody), by status class.",
        "# TYPE gateway_shadow_replies_total counter",
    ]
    for (route, klass), v in sorted(t.shadow_replies.items()):
        lines.append(f"gateway_shadow_replies_total{_labels(('route', 'status'), (route, klass))} {v:g}")
    lines += [
        "# HELP gateway_shadow_duration_seconds Time Python took for a shadow replay.",
        "# TYPE gateway_shadow_duration_seconds histogram",
    ]
    lines += _histogram("gateway_shadow_duration_seconds", ("route",), sorted(
        ((route,), hist) for route, hist in t.shadow_latency.items()))
    lines += [
        "# HELP gateway_upstream_errors_total Legacy backend failures (connect, timeout, reset), by route prefix.",
        "# TYPE gateway_upstream_errors_total counter",
    ]
    for (route, kind), v in sorted(t.errors.items()):
        lines.append(f"gateway_upstream_errors_total{_labels(('route', 'kind'), (route, kind))} {v:g}")
    lines += [
        "# HELP gateway_config_reloads_total routes.yaml reloads by outcome, summed over workers.",
        "# TYPE gateway_config_reloads_total counter",
    ]
    for outcome in ("ok", "error"):
        lines.append(f'gateway_config_reloads_total{{outcome="{outcome}"}} {t.reloads.get(outcome, 0):g}')
    for name, series in sorted(t.extra.items()):
        lines.append(f"# TYPE {name} counter")
        for labels, v in sorted(series.items()):
            lines.append(f"{name}{_labels([k for k, _ in labels], [x for _, x in labels])} {v:g}")
    for name, (help_text, value) in (gauges or {}).items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
    return "\n".join(lines) + "\n"
