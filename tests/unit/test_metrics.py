"""gateway.ops.metrics: what a Prometheus scrape of the gateway reads.

The exposition is prometheus_client's; these tests read it back with
prometheus_client's own parser, the way a scraper would, and pin the names
dashboards and alerts already use.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.ops.metrics import CONTENT_TYPE, EXTRA_COUNTERS, Metrics, render

GAUGES = {
    "gateway_config_error": ("1 while the last routes.yaml edit was rejected.", 0.0),
    "gateway_config_loaded_timestamp_seconds": ("When this worker's live table was loaded.", 1_700_000_000.0),
}

# Every family, under the name and type it had before prometheus_client wrote it.
FAMILIES = {
    "gateway_requests_total": "counter",
    "gateway_request_duration_seconds": "histogram",
    "gateway_shadow_replies_total": "counter",
    "gateway_shadow_duration_seconds": "histogram",
    "gateway_upstream_errors_total": "counter",
    "gateway_config_reloads_total": "counter",
    "gateway_config_error": "gauge",
    "gateway_config_loaded_timestamp_seconds": "gauge",
    "gateway_shadow_requests_total": "counter",
    "gateway_shadow_matches_total": "counter",
    "gateway_shadow_differences_total": "counter",
    "gateway_shadow_dropped_total": "counter",
    "gateway_shadow_python_errors_total": "counter",
    "gateway_shadow_skipped_total": "counter",
    "gateway_canary_rollbacks_total": "counter",
}


def busy_worker() -> Metrics:
    """A worker that has seen one of everything the gateway counts."""
    m = Metrics()
    m.observe("/users", "go", 200, 0.003)
    m.observe("/users", "python", 503, 0.2)
    m.observe_shadow("/users", 200, 0.01)
    m.upstream_error("*", "ConnectError")
    m.reload("ok")
    m.inc("gateway_shadow_requests_total", {"route": "/users"})
    m.inc("gateway_shadow_matches_total", {"route": "/users"})
    m.inc("gateway_shadow_differences_total", {"route": "/users", "field": "body:$.Name"})
    m.inc("gateway_shadow_dropped_total", {"route": "/users"})
    m.inc("gateway_shadow_python_errors_total", {"route": "/users", "kind": "timeout"})
    m.inc("gateway_shadow_skipped_total", {"route": "/users", "reason": "body_too_large"})
    m.inc("gateway_canary_rollbacks_total", {"route": "/users"})
    return m


def scrape(*workers: Metrics) -> str:
    snapshots = [snap for w in workers for snap in w.collect()]
    return render(snapshots, GAUGES).decode("utf-8")


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(text) if s.name == name and labels.items() <= s.labels.items())


def test_every_family_has_help_and_type_under_its_old_name():
    text = scrape(busy_worker())
    lines = text.splitlines()
    for name, kind in FAMILIES.items():
        help_lines = [line for line in lines if line.startswith(f"# HELP {name} ")]
        assert len(help_lines) == 1, f"{name}: HELP lines {help_lines}"
        assert len(help_lines[0]) > len(f"# HELP {name} ") + 10, f"{name}: HELP says nothing: {help_lines[0]}"
        assert f"# TYPE {name} {kind}" in lines
    declared = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert declared == set(FAMILIES), "a family appeared or vanished"
    # The parser agrees: every family has its documentation and type.
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name
        assert family.type == FAMILIES.get(family.name) or family.type == FAMILIES.get(family.name + "_total")


def test_sample_names_and_labels_are_unchanged():
    text = scrape(busy_worker())
    assert value(text, "gateway_requests_total", route="/users", backend="go", status="2xx") == 1
    assert value(text, "gateway_requests_total", route="/users", backend="python", status="5xx") == 1
    assert value(text, "gateway_request_duration_seconds_count", route="/users", backend="go") == 1
    assert value(text, "gateway_request_duration_seconds_bucket", route="/users", backend="go", le="0.005") == 1
    assert value(text, "gateway_request_duration_seconds_bucket", route="/users", backend="go", le="0.0025") == 0
    assert value(text, "gateway_request_duration_seconds_bucket", route="/users", backend="python", le="+Inf") == 1
    assert value(text, "gateway_request_duration_seconds_sum", route="/users", backend="python") == pytest.approx(0.2)
    assert value(text, "gateway_shadow_replies_total", route="/users", status="2xx") == 1
    assert value(text, "gateway_shadow_duration_seconds_count", route="/users") == 1
    assert value(text, "gateway_upstream_errors_total", route="*", kind="ConnectError") == 1
    assert value(text, "gateway_config_reloads_total", outcome="ok") == 1
    assert value(text, "gateway_config_reloads_total", outcome="error") == 0  # present before the first failure
    assert value(text, "gateway_config_loaded_timestamp_seconds") == 1_700_000_000
    assert value(text, "gateway_shadow_python_errors_total", route="/users", kind="timeout") == 1
    assert value(text, "gateway_shadow_differences_total", route="/users", field="body:$.Name") == 1
    assert value(text, "gateway_canary_rollbacks_total", route="/users") == 1
    # The buckets keep their old label values (le="1", not prometheus_client's "1.0").
    les = {s.labels["le"] for s in samples(text) if s.name == "gateway_request_duration_seconds_bucket"}
    assert {"0.001", "1", "60", "+Inf"} <= les and "1.0" not in les


def test_shadow_replays_are_not_requests():
    m = Metrics()
    for _ in range(3):
        m.observe("/users", "go", 200, 0.004)  # the client's answer, from Go
        m.observe_shadow("/users", 500, 0.02)  # the replay to Python: served nobody
    text = scrape(m)
    assert value(text, "gateway_requests_total", route="/users") == 3
    assert value(text, "gateway_requests_total", route="/users", backend="python") == 0
    assert value(text, "gateway_request_duration_seconds_count", route="/users") == 3
    assert value(text, "gateway_shadow_replies_total", route="/users", status="5xx") == 3
    assert value(text, "gateway_shadow_duration_seconds_count", route="/users") == 3


@pytest.mark.parametrize("hostile", [
    'body:$["a\\"b"]',  # a JSON key holding a quote, as gateway.diff names it
    "body:$.path\\to\\thing",  # backslashes
    "header:x-two\nlines",  # a newline
    'all of them: \\" \n \\\\n "',
])
def test_label_values_are_escaped_and_parse_back(hostile: str):
    m = Metrics()
    m.inc("gateway_shadow_differences_total", {"route": "/users", "field": hostile})
    m.observe(hostile, "go", 200, 0.001)  # route prefixes are restricted; the exposition need not rely on it
    text = scrape(m)
    # One sample per line: an unescaped newline would have split it.
    diff_lines = [line for line in text.splitlines() if line.startswith("gateway_shadow_differences_total{")]
    assert len(diff_lines) == 1
    fields = [s.labels["field"] for s in samples(text) if s.name == "gateway_shadow_differences_total"]
    assert fields == [hostile]
    assert value(text, "gateway_requests_total", route=hostile, backend="go") == 1
    assert value(text, "gateway_request_duration_seconds_bucket", route=hostile, le="+Inf") == 1


def test_a_scrape_sums_every_workers_snapshot(tmp_path: Path):
    # Two other workers of one `gateway serve --workers N` (one may have exited
    # since: its snapshot still counts) and the worker that answers the scrape.
    for pid in (101, 102):
        (tmp_path / f"worker-{pid}.json").write_text(json.dumps(busy_worker().snapshot()))
    scraped = Metrics(str(tmp_path))
    scraped.observe("/users", "go", 200, 0.001)
    text = render(scraped.collect(), GAUGES).decode()
    assert value(text, "gateway_requests_total", route="/users", backend="go") == 3
    assert value(text, "gateway_request_duration_seconds_count", route="/users", backend="go") == 3
    assert value(text, "gateway_shadow_replies_total", route="/users") == 2
    assert value(text, "gateway_canary_rollbacks_total", route="/users") == 2


def test_an_undeclared_counter_is_refused():
    with pytest.raises(ValueError, match="EXTRA_COUNTERS"):
        Metrics().inc("gateway_shadow_typo_total", {"route": "/users"})
    # Counters keep the Prometheus suffix, so prometheus_client exposes them unrenamed.
    assert all(name.endswith("_total") for name in EXTRA_COUNTERS)


def test_content_type_is_the_classic_text_format():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
