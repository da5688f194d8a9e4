"""A span data set covering every /otel filter, and a pipeline fixture serving it."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from services.common.session_codec import SessionCodec
from services.otel.owner import Pipeline
from services.otel.rows import span_to_row

SECRET = "test-secret"
CODEC = SessionCodec([SECRET.encode()])
SVC = "svc a/b ü"
OTHER = "other service"
UNI = "ü x"
T0 = 1_700_000_000_000_000_000


def cookie() -> str:
    return f"session={CODEC.encode('ada@example.com', now=time.time())}; csrf=tok"


def s(key, value):
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(trace: int, sid: int, *, parent: int | None = None, t: int = 0, attrs=(), **kw) -> Span:
    return Span(trace_id=trace.to_bytes(16, "big"), span_id=sid.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"",
                start_time_unix_nano=T0 + t, end_time_unix_nano=T0 + t + 1500, attributes=list(attrs), **kw)


def tid(n: int) -> str:
    return n.to_bytes(16, "big").hex()


def sid(n: int) -> str:
    return n.to_bytes(8, "big").hex()


def dataset() -> list:
    """(service, Span) pairs covering every filter."""
    rows = [
        # trace 1: a workflow root + two children, svc
        (SVC, span(1, 1, t=3_000_000, name="wf", attrs=[
            s("junjo.span_type", "workflow"), s("junjo.id", "W1"), s("junjo.workflow.state.start", '{"a": 1.0}'),
            s("junjo.workflow.state.end", '{"big": 1700000000123456789, "tiny": 0.0000001, "x": "<&>"}'),
            KeyValue(key="ratio", value=AnyValue(double_value=2.5e-5))],
            events=[Span.Event(name="set_state", time_unix_nano=T0 + 123_456_789,
                               attributes=[s("junjo.state_json_patch", "[]")])])),
        (SVC, span(1, 2, parent=1, t=3_001_000, name="child a")),
        (SVC, span(1, 3, parent=2, t=3_002_000, name="child b")),
        # trace 2: plain root in svc, LLM span in another service in the same trace
        (SVC, span(2, 10, t=1_000_000, name="older root")),
        (OTHER, span(2, 11, parent=10, t=1_005_000, name="llm", attrs=[s("openinference.span.kind", "LLM")])),
        # trace 3: root in svc whose LLM marker is not the exact text
        (SVC, span(3, 20, t=2_000_000, name="not llm", attrs=[s("openinference.span.kind", "llm")])),
        # trace 4: a root of the other service
        (OTHER, span(4, 30, t=500, name="other root", trace_state="k=v", flags=1)),
        # trace 5: a service name with a space and unicode, no slash
        (UNI, span(5, 50, t=9_000, name="uni root", attrs=[KeyValue(key="n", value=AnyValue(int_value=-3))])),
        # trace 0xabc: one orphan child (ids are matched case-sensitively)
        (OTHER, span(0xABC, 40, parent=99, t=7_000, name="orphan")),
    ]
    return rows


def all_rows() -> list:
    rows = [span_to_row(sp, service) for service, sp in dataset()]
    rows += [span_to_row(span(100 + i, 1000 + i, t=i * 1000, name=f"r{i}"), "many") for i in range(510)]
    return rows


def serving_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A pipeline (no poller) holding every row of the data set, for a module fixture."""
    db = tmp_path_factory.mktemp("otel") / "routes.duckdb"
    p = Pipeline(str(db), start_poller=False).start()
    assert p.wait_ready(10)
    p.store.ingest(all_rows(), b"\x00" * 16)
    yield p
    p.stop()
