"""ingestion (fake) → poller → DuckDB, with real junjo spans over OTLP/gRPC."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from services.common import Database
from services.otel.auth_service import make_server
from services.otel.owner import Pipeline
from services.otel.proto import ingestion_pb2, ingestion_pb2_grpc
from tests.support.fake_ingestion import FakeIngestion
from tests.support.otel_gen import send_bulk

REPO = Path(__file__).resolve().parents[2]
API_KEY = "k" * 64
SERVICE = "svc a/b ü"


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_junjo(endpoint: str, service: str = SERVICE, runs: int = 2, llm: bool = True,
              api_key: str = API_KEY) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.support.otel_gen", "junjo", "--endpoint", endpoint,
           "--api-key", api_key, "--service", service, "--runs", str(runs)]
    if llm:
        cmd.append("--llm")
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    db = Database.from_url(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'app_data.db'}")
    db.create_api_key("id-1", API_KEY, "test key")
    server, port = make_server("127.0.0.1:0", lambda: db)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)
    db.dispose()


@pytest.fixture(scope="module")
def junjo_ingestion(auth):
    """A fake ingestion holding real junjo spans (2 workflow runs, one service)."""
    fake = FakeIngestion(auth_addr=auth).start()
    result = run_junjo(fake.otlp_addr)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(fake.wal) >= 14, what="junjo spans in the WAL")
    yield fake
    fake.stop()


def start_pipeline(db_path: Path, addr: str, **poller) -> Pipeline:
    options = {"addr": addr, "interval": 0.2, **poller}
    pipeline = Pipeline(str(db_path), poller_options=options).start()
    assert pipeline.wait_ready(10)
    return pipeline


def test_junjo_workflow_spans_land_in_duckdb(junjo_ingestion, tmp_path):
    pipeline = start_pipeline(tmp_path / "otel.duckdb", junjo_ingestion.internal_addr, batch_size=5)
    try:
        store = pipeline.store
        wait_for(lambda: pipeline.poller.status.spans_ingested == len(junjo_ingestion.wal),
                 what="all spans stored")
        rows = store.dump_rows()
        by_type = {}
        for r in rows:
            by_type.setdefault(r["junjo_span_type"], []).append(r)
        assert {r["service_name"] for r in rows} == {SERVICE}
        assert len(by_type["workflow"]) == 2 and len(by_type["subflow"]) == 2
        wf = by_type["workflow"][0]
        assert wf["kind"] == "CLIENT"  # OTLP INTERNAL, the legacy's swapped label
        assert wf["parent_span_id"] is None
        assert wf["junjo_wf_state_start"]["count"] == 0
        assert wf["junjo_wf_state_end"]["count"] == 2
        assert wf["junjo_wf_state_end"]["items"] == ["<b>&\"é\u2028"]
        assert wf["junjo_wf_state_end"]["sub_result"] == "HELLO"
        assert "nodes" in wf["junjo_wf_graph_structure"]
        assert wf["junjo_wf_store_id"] not in ("", "{}")
        assert "junjo.id" not in wf["attributes_json"]
        assert wf["end_time"].endswith("Z") and wf["start_time"] < wf["end_time"]
        nodes = by_type["node"]
        assert all(n["junjo_parent_id"] for n in nodes)
        count_nodes = [n for n in nodes if n["name"] == "Count"]
        events = count_nodes[0]["events_json"]
        assert [e["name"] for e in events] == ["set_state", "set_state"]
        assert set(events[0]) == {"attributes", "droppedAttributesCount", "name", "timeUnixNano"}
        llm = [r for r in rows if r["name"] == "llm-call"]
        assert llm and llm[0]["attributes_json"]["openinference.span.kind"] == "LLM"
        assert llm[0]["junjo_span_type"] == ""
        # state patches: one per set_state event, node ids on node spans
        patches = store.fetch("SELECT node_id, workflow_id, patch_json::VARCHAR, service_name "
                              "FROM state_patches", ())
        n_events = sum(1 for r in rows for e in r["events_json"] if e["name"] == "set_state")
        assert len(patches) == n_events > 0
        node_ids = {n["junjo_id"] for n in nodes}
        assert all(p[0] in node_ids for p in patches if p[0])
        assert sum(1 for p in patches if p[0]) >= 4  # node spans' patches carry the node id
        assert all(isinstance(json.loads(p[2]), list) for p in patches)
        status = pipeline.local_status()
        assert status["role"] == "owner"
        assert status["poller"]["spans_ingested"] == len(rows)
        assert status["poller"]["last_error"] is None
    finally:
        pipeline.stop()


def test_api_key_check_on_export(junjo_ingestion):
    stub = TraceServiceStub(grpc.insecure_channel(junjo_ingestion.otlp_addr))
    with pytest.raises(grpc.RpcError) as missing:
        stub.Export(ExportTraceServiceRequest(), timeout=5)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.value.details() == "x-junjo-api-key is not provided"
    with pytest.raises(grpc.RpcError) as wrong:
        stub.Export(ExportTraceServiceRequest(), metadata=[("x-junjo-api-key", API_KEY.upper())], timeout=5)
    assert (wrong.value.code(), wrong.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
    stub.Export(ExportTraceServiceRequest(), metadata=[("x-junjo-api-key", API_KEY)], timeout=5)


def test_validate_api_key_server(auth):
    stub = ingestion_pb2_grpc.InternalAuthServiceStub(grpc.insecure_channel(auth))
    ask = lambda key: stub.ValidateApiKey(ingestion_pb2.ValidateApiKeyRequest(api_key=key), timeout=5).is_valid
    assert ask(API_KEY) is True
    assert ask(API_KEY.upper()) is False
    assert ask("") is False


def test_validate_api_key_database_error_is_internal():
    def broken():
        raise RuntimeError("disk on fire")
    server, port = make_server("127.0.0.1:0", broken)
    server.start()
    try:
        stub = ingestion_pb2_grpc.InternalAuthServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        with pytest.raises(grpc.RpcError) as err:
            stub.ValidateApiKey(ingestion_pb2.ValidateApiKeyRequest(api_key="x"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == "failed to get API key: disk on fire"
    finally:
        server.stop(0)


def test_read_spans_contract_of_the_fake():
    fake = FakeIngestion().start()
    try:
        for i in range(5):
            fake.wal.append(Span(name=f"s{i}").SerializeToString(), b"")
        fake.wal.append(b"\x0a\xff", b"")  # undecodable
        fake.wal.append(Span(name="s6").SerializeToString(), b"")
        stub = ingestion_pb2_grpc.InternalIngestionServiceStub(grpc.insecure_channel(fake.internal_addr))
        read = lambda start, n: list(stub.ReadSpans(ingestion_pb2.ReadSpansRequest(
            start_key_ulid=start, batch_size=n), timeout=5))
        all_entries = read(b"", 100)
        assert [Span.FromString(e.span_bytes).name for e in all_entries] == ["s0", "s1", "s2", "s3", "s4", "s6"]
        assert read(b"", 0) == []
        keys = fake.wal.keys
        assert keys == sorted(keys) and all(len(k) == 16 for k in keys)
        assert [Span.FromString(e.span_bytes).name for e in read(keys[1], 2)] == ["s2", "s3"]  # exclusive
        assert [Span.FromString(e.span_bytes).name for e in read(keys[4], 2)] == ["s6"]  # garbage counted
        assert read(keys[-1], 10) == []
        assert [Span.FromString(e.span_bytes).name for e in read(keys[2][:3], 1)] == ["s0"]
    finally:
        fake.stop()


def _export(fake: FakeIngestion, resource_spans: list[ResourceSpans]) -> None:
    stub = TraceServiceStub(grpc.insecure_channel(fake.otlp_addr))
    stub.Export(ExportTraceServiceRequest(resource_spans=resource_spans), timeout=5)


def _rs(service: str | None, spans: list[Span]) -> ResourceSpans:
    attrs = [] if service is None else [KeyValue(key="service.name", value=AnyValue(string_value=service))]
    return ResourceSpans(resource=Resource(attributes=attrs), scope_spans=[ScopeSpans(spans=spans)])


def test_each_span_keeps_its_own_service_name(tmp_path):
    fake = FakeIngestion().start()
    try:
        _export(fake, [_rs("alpha", [Span(trace_id=b"\x01" * 16, span_id=b"\x01" * 8)]),
                       _rs("beta", [Span(trace_id=b"\x02" * 16, span_id=b"\x02" * 8)]),
                       _rs(None, [Span(trace_id=b"\x03" * 16, span_id=b"\x03" * 8)])])
        pipeline = start_pipeline(tmp_path / "o.duckdb", fake.internal_addr)
        try:
            wait_for(lambda: pipeline.store.count() == 3)
            names = {r["trace_id"][:2]: r["service_name"] for r in pipeline.store.dump_rows()}
            assert names == {"01": "alpha", "02": "beta", "03": "NO_SERVICE_NAME"}
        finally:
            pipeline.stop()
    finally:
        fake.stop()


def test_backlog_drains_in_one_poll_and_restart_neither_loses_nor_duplicates(tmp_path):
    fake = FakeIngestion().start()
    db = tmp_path / "o.duckdb"
    try:
        assert send_bulk(fake.otlp_addr, "", 2500) == 2500
        pipeline = start_pipeline(db, fake.internal_addr, interval=60, batch_size=100)
        try:
            wait_for(lambda: pipeline.poller.status.last_poll_ok_at is not None, what="backlog drained")
            assert pipeline.store.count() == 2500
            assert pipeline.poller.status.batches == 25  # one poll, 25 batches, no 5 s waits
            patches = pipeline.store.count("state_patches")
            assert patches == 2250  # 9 node spans of 10 carry one set_state each
        finally:
            pipeline.stop()
        send_bulk(fake.otlp_addr, "", 100, service="later")  # same ids: spans ignored, patches not duplicated
        fake.wal.append(Span(trace_id=b"\xee" * 16, span_id=b"\xee" * 8, name="new").SerializeToString(), b"")
        reads_before = fake.read_calls
        pipeline = start_pipeline(db, fake.internal_addr, interval=60, batch_size=100)
        try:
            wait_for(lambda: pipeline.poller.status.last_poll_ok_at is not None, what="the new span")
            assert pipeline.store.count() == 2501
            assert pipeline.store.count("state_patches") == patches
            first_read = fake.read_calls - reads_before
            assert pipeline.poller.status.entries_read == 101  # resumed after the stored cursor
            assert first_read >= 1
        finally:
            pipeline.stop()
    finally:
        fake.stop()


def test_ingestion_down_then_back(tmp_path):
    fake = FakeIngestion().start()
    try:
        fake.fail_reads = True
        pipeline = start_pipeline(tmp_path / "o.duckdb", fake.internal_addr, interval=0.1)
        try:
            wait_for(lambda: pipeline.poller.status.last_error is not None, what="an error")
            status = pipeline.local_status()["poller"]
            assert "UNAVAILABLE" in status["last_error"] and status["consecutive_failures"] >= 1
            assert status["last_poll_ok_at"] is None
            assert status["behind"] is True and status["behind_by_s"] >= 0
            fake.wal.append(Span(trace_id=b"\x05" * 16, span_id=b"\x05" * 8).SerializeToString(), b"")
            fake.fail_reads = False
            pipeline.poller.poke()
            wait_for(lambda: pipeline.store.count() == 1, what="recovery")
            wait_for(lambda: pipeline.poller.status.consecutive_failures == 0)
            assert pipeline.poller.status.last_poll_ok_at is not None
            assert pipeline.local_status()["poller"]["behind"] is False
        finally:
            pipeline.stop()
    finally:
        fake.stop()
