"""Trace pipeline benchmark: WAL → DuckDB ingest rate, then /otel route latency.

    .venv/bin/python -m tools.bench.otel_bench              # 20k spans (seconds)
    .venv/bin/python -m tools.bench.otel_bench --spans 1000000

Spans are junjo-shaped (tests/support/otel_gen.py bulk: 1 workflow + 9 nodes per trace, one
set_state event per node) sent over OTLP/gRPC to the fake ingestion; the poller drains
them with the production code (rows.py + store.py). Route latency is then measured
through a real gateway process (/otel → python, signed-in session cookie), sequential
keep-alive requests. Prints figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from services.otel.owner import Pipeline
from tests.support.fake_ingestion import FakeIngestion
from tests.support.otel_gen import bulk_requests


def fill(fake: FakeIngestion, spans: int) -> float:
    """Load the WAL directly (OTLP Export is not what we measure). Returns seconds."""
    started = time.perf_counter()
    for request in bulk_requests(spans, service="bench"):
        resource = request.resource_spans[0].resource.SerializeToString()
        fake.wal.append_many([(s.SerializeToString(), resource)
                              for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans])
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def through_gateway(duckdb: Path, ingestion: str, routes: list, requests: int) -> None:
    """p50/p99 of each route through a real gateway process (/otel → python)."""
    from services.common.session_codec import SessionCodec
    from tests.support.gateway_proc import routes_yaml, start_gateway

    env = {"OTEL_DUCKDB_PATH": str(duckdb), "INGESTION_ADDR": ingestion, "OTEL_POLL_INTERVAL": "3600",
           "GATEWAY_ACCESS_LOG": "0"}
    home = duckdb.parent / "gateway"
    home.mkdir()
    gw = start_gateway(routes_yaml("http://127.0.0.1:9", "  - prefix: /otel\n    to: python\n"), home, env=env)
    cookie = {"session": SessionCodec([b"test-secret"]).encode("bench@example.com")}
    paths = {
        "service_names": "/otel/span-service-names",
        "root_spans": "/otel/service/{serviceName}/root-spans",
        "root_spans_filtered": "/otel/service/{serviceName}/root-spans-filtered",
        "nested_spans": "/otel/trace/{traceId}/nested-spans",
        "span": "/otel/trace/{traceId}/span/{spanId}",
        "workflow_spans": "/otel/spans/type/workflow/{serviceName}",
    }
    try:
        with httpx.Client(base_url=gw.url, cookies=cookie, timeout=120) as client:
            for _ in range(100):  # the pipeline elects its owner and opens the file
                if client.get(paths["service_names"]).status_code == 200:
                    break
                time.sleep(0.1)
            print(f"route latency through the gateway, {requests} sequential requests each (ms):")
            for label, route, params in routes:
                n = requests if route != "workflow_spans" else max(5, requests // 20)
                url = paths[route].format(**params)
                samples, size = [], 0
                for _ in range(n):
                    t = time.perf_counter()
                    r = client.get(url)
                    samples.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (url, r.status_code, r.text[:200])
                    size = len(r.content)
                p50, p99 = percentiles(samples)
                print(f"  {label:40s} p50 {p50:8.2f}  p99 {p99:8.2f}  ({size:,} bytes, n={n})", flush=True)
    finally:
        gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="per route")
    args = parser.parse_args()

    fake = FakeIngestion().start()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"filling the WAL with {args.spans:,} spans ...", flush=True)
        print(f"  WAL filled in {fill(fake, args.spans):.1f}s")
        pipeline = Pipeline(str(Path(tmp) / "bench.duckdb"),
                            poller_options={"addr": fake.internal_addr, "interval": 3600,
                                            "batch_size": args.batch_size}).start()
        started = time.perf_counter()
        assert pipeline.wait_ready(30)
        status = pipeline.poller.status
        while status.last_poll_ok_at is None:
            time.sleep(0.05)
        took = time.perf_counter() - started
        store = pipeline.store
        print(f"ingest: {store.count():,} spans, {store.count('state_patches'):,} patches in {took:.1f}s "
              f"→ {store.count() / took:,.0f} spans/s (batch {args.batch_size})")

        trace = store.fetch("SELECT trace_id, span_id FROM spans WHERE junjo_span_type = 'workflow' "
                            "ORDER BY start_time DESC LIMIT 1", ())[0]
        routes = [
            ("span-service-names", "service_names", {}),
            ("service/bench/root-spans (500 rows)", "root_spans", {"serviceName": "bench"}),
            ("service/bench/root-spans-filtered", "root_spans_filtered", {"serviceName": "bench"}),
            ("trace/:t/nested-spans (10 rows)", "nested_spans", {"traceId": trace[0]}),
            ("trace/:t/span/:s", "span", {"traceId": trace[0], "spanId": trace[1]}),
            ("spans/type/workflow/bench (all)", "workflow_spans", {"serviceName": "bench"}),
        ]
        pipeline.stop()  # hand the DuckDB file over to the gateway's own pipeline
        through_gateway(Path(tmp) / "bench.duckdb", fake.internal_addr, routes, args.requests)
    fake.stop()


if __name__ == "__main__":
    main()
