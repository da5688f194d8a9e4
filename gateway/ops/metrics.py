"""Per-route metrics in Prometheus text format, aggregated across workers.

Each worker counts in its own memory (a few dict increments per request) and
publishes a snapshot file to a directory shared by the workers of one
``gateway serve`` (``GATEWAY_METRICS_DIR``), once a second and whenever it
answers ``/_gateway/metrics``. The scrape sums every worker's latest snapshot,
so the numbers cover the whole gateway whichever worker the scraper reaches.
Snapshots of workers that exited are kept, like prometheus_client's
multiprocess mode, so counters never go backwards.

The exposition itself is prometheus_client's: ``GatewayCollector`` turns the
summed snapshots into metric families at scrape time and ``generate_latest``
writes them (HELP and TYPE for every family, label values escaped). The hot
path never touches prometheus_client: its Counter objects take a lock per
increment, and its multiprocess mode wants its directory set before import and
can't carry what the status page and the rollback guard read from the same
snapshots (the summed ``Totals``, the latest diff samples).
"""
from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

# The classic text format (0.0.4) that generate_latest writes, every
# Prometheus reads and this endpoint has always announced. Not
# CONTENT_TYPE_LATEST: since prometheus_client 0.23 that says version=1.0.0,
# which Prometheus before 3.0 doesn't know.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# The counters that features beyond routing keep with ``Metrics.inc``, each
# with its HELP text. A new one is declared here first: an undeclared name is
# refused, so no family reaches a dashboard without an explanation.
EXTRA_COUNTERS: dict[str, str] = {
    "gateway_shadow_requests_total":
        "Shadow replays whose Python answer was compared with Go's, by route prefix.",
    "gateway_shadow_matches_total":
        "Shadow replays whose Python answer matched Go's after ignored paths and Go-vs-Go noise.",
    "gateway_shadow_differences_total":
        "Differences found by shadow replays, by route prefix and answer field (status, header, body path).",
    "gateway_shadow_dropped_total":
        "Shadow replays dropped because the replay queue was full (the client was served by Go regardless).",
    "gateway_shadow_python_errors_total":
        "Shadow replays where the Python service raised or timed out, by route prefix and kind.",
    "gateway_shadow_skipped_total":
        "Shadowed requests not replayed, by route prefix and reason (body_too_large).",
    "gateway_canary_rollbacks_total":
        "Canary routes moved back to Go by the automatic rollback, by route prefix.",
    "gateway_edge_events_total":
        "Requests or connections the edge refused or cut before or while the app had them, by limit "
        "(head_timeout, header_line, max_connections, body_idle_timeout, send_timeout, malformed, "
        "malformed_body, ...).",
}


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
        """A counter for features beyond plain routing (shadow, canary, ...),
        declared with its HELP text in ``EXTRA_COUNTERS``."""
        if name not in EXTRA_COUNTERS:
            raise ValueError(f"{name}: declare it in gateway.ops.metrics.EXTRA_COUNTERS with its HELP text")
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


_CLASSES = ("aborted", "1xx", "2xx", "3xx", "4xx", "5xx")  # by status // 100; built once, not per request


def _status_class(status: int) -> str:
    if 100 <= status < 600:
        return _CLASSES[status // 100]
    return f"{status // 100}xx" if status else "aborted"


def _add(histograms: dict[Any, list[float]], key: Any, seconds: float) -> None:
    hist = histograms.get(key)
    if hist is None:
        hist = histograms[key] = [0.0] * (len(BUCKETS) + 3)
    hist[bisect_left(BUCKETS, seconds)] += 1  # the last slot before sum/count is +Inf
    hist[-2] += seconds
    hist[-1] += 1


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


# -- exposition ------------------------------------------------------------------

Gauges = Mapping[str, tuple[str, float]]  # name -> (HELP text, value)


def families(t: Totals, gauges: Gauges | None = None) -> Iterator[Metric]:
    """Every family the gateway exposes, from the summed snapshots. Series are
    sorted so two scrapes of the same numbers read the same."""
    yield _counter("gateway_requests_total",
                   "Requests answered, by route prefix, backend and status class (shadow replays excluded).",
                   ("route", "backend", "status"), t.requests)
    yield _histogram("gateway_request_duration_seconds",
                     "Time from request start to the last body byte sent.",
                     ("route", "backend"), t.latency)
    yield _counter("gateway_shadow_replies_total",
                   "Shadow replays answered by Python (served nobody), by route prefix and status class.",
                   ("route", "status"), t.shadow_replies)
    yield _histogram("gateway_shadow_duration_seconds", "Time Python took for a shadow replay.",
                     ("route",), {(route,): hist for route, hist in t.shadow_latency.items()})
    yield _counter("gateway_upstream_errors_total",
                   "Legacy backend failures (connect, timeout, reset), by route prefix and kind.",
                   ("route", "kind"), t.errors)
    # Both outcomes always, so an alert on errors has a series from the start.
    yield _counter("gateway_config_reloads_total", "routes.yaml reloads by outcome, summed over workers.",
                   ("outcome",), {(outcome,): t.reloads.get(outcome, 0.0) for outcome in ("ok", "error")})
    for name, series in sorted(t.extra.items()):
        yield _extra_counter(name, series)
    for name, (help_text, value) in (gauges or {}).items():
        yield GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, labels: tuple[str, ...],
             series: Mapping[tuple[str, ...], float]) -> CounterMetricFamily:
    # CounterMetricFamily drops a trailing "_total" from the family name and
    # puts it back on every sample and on HELP/TYPE: the names stay as given.
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in sorted(series.items()):
        family.add_metric(values, value)
    return family


def _extra_counter(name: str, series: Mapping[tuple[tuple[str, str], ...], float]) -> CounterMetricFamily:
    """A counter kept by ``Metrics.inc``: each series carries its own label
    names. Ones a series lacks are given as "", which Prometheus reads as the
    label being absent."""
    names = sorted({label for key in series for label, _ in key})
    help_text = EXTRA_COUNTERS.get(name, f"{name} (no HELP text declared in gateway.ops.metrics.EXTRA_COUNTERS).")
    rows: dict[tuple[str, ...], float] = defaultdict(float)
    for key, value in series.items():
        rows[tuple(dict(key).get(label, "") for label in names)] += value
    return _counter(name, help_text, tuple(names), rows)


def _histogram(name: str, help_text: str, labels: tuple[str, ...],
               series: Mapping[tuple[str, ...], list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for values, hist in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip((*BUCKETS, float("inf")), hist[:-2]):
            cumulative += count
            # le="1", not prometheus_client's "1.0": the series keep the names
            # they had before the exposition moved to the library.
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
        family.add_metric(values, buckets, sum_value=hist[-2])
    return family


class GatewayCollector(Collector):
    """Reads every worker's snapshot at scrape time and yields the families.

    Register it on a private ``CollectorRegistry``, never the process-wide
    default one: that adds prometheus_client's process and GC metrics of
    whichever worker answered, and two gateways in one process (tests) would
    each expose the other's families too.
    """

    def __init__(self, snapshots: Callable[[], list[dict[str, Any]]],
                 gauges: Callable[[], Gauges] | None = None) -> None:
        self.snapshots = snapshots
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from families(aggregate(self.snapshots()), self.gauges() if self.gauges else None)


def registry(snapshots: Callable[[], list[dict[str, Any]]], gauges: Callable[[], Gauges] | None = None,
             ) -> CollectorRegistry:
    """A private registry holding just the gateway's collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(GatewayCollector(snapshots, gauges))
    return reg


def render(snapshots: list[dict[str, Any]], gauges: Gauges | None = None) -> bytes:
    """The workers' snapshots summed, in Prometheus text exposition format."""
    return generate_latest(registry(lambda: snapshots, lambda: gauges or {}))
