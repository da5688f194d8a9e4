"""Span generators for the trace pipeline tests and benchmark.

* ``junjo`` — real junjo SDK (0.61.x) workflows: a workflow with nodes that set
  state, a subflow with its own node, exported with the junjo SDK's exporter
  (OTLP/gRPC, ``x-junjo-api-key``). Runs in its own process because
  OpenTelemetry's tracer provider is process-global::

      python -m tests.otel_gen junjo --endpoint 127.0.0.1:4317 --api-key K \\
          --service "svc one" --runs 2

* ``bulk`` — synthetic junjo-shaped traces (1 workflow + N nodes with
  ``set_state`` events each) sent with raw OTLP ``Export`` calls, fast enough
  for a million spans. :func:`bulk_requests` is importable.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

# --- junjo workflows ------------------------------------------------------------

def run_junjo(endpoint: str, api_key: str, service: str, runs: int, llm: bool) -> None:
    from junjo import BaseState, BaseStore, Edge, Graph, Node, Subflow, Workflow
    from junjo.telemetry.junjo_server_otel_exporter import JunjoServerOtelExporter
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=SdkResource.create({"service.name": service}))
    exporter = JunjoServerOtelExporter(host=endpoint.rsplit(":", 1)[0], port=endpoint.rsplit(":", 1)[1],
                                       api_key=api_key, insecure=True)
    provider.add_span_processor(exporter.span_processor)
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("otel_gen")

    class State(BaseState):
        count: int = 0
        items: list[str] = []
        ratio: float = 0.0
        sub_result: str | None = None

    class Store(BaseStore[State]):
        async def bump(self) -> None:
            state = await self.get_state()
            await self.set_state({"count": state.count + 1, "ratio": (state.count + 1) / 3})

        async def add_item(self, item: str) -> None:
            state = await self.get_state()
            await self.set_state({"items": [*state.items, item]})

        async def set_sub_result(self, value: str) -> None:
            await self.set_state({"sub_result": value})

    class SubState(BaseState):
        text: str = ""

    class SubStore(BaseStore[SubState]):
        async def set_text(self, text: str) -> None:
            await self.set_state({"text": text})

    class Count(Node[Store]):
        async def service(self, store: Store) -> None:
            await store.bump()
            await store.bump()

    class AddItem(Node[Store]):
        async def service(self, store: Store) -> None:
            await store.add_item("<b>&\"é\u2028")
            if llm:
                with tracer.start_as_current_span("llm-call") as span:
                    span.set_attribute("openinference.span.kind", "LLM")
                    span.set_attribute("llm.token_count.total", 42)
                    span.set_attribute("llm.temperature", 0.7)

    class Upper(Node[SubStore]):
        async def service(self, store: SubStore) -> None:
            await store.set_text("HELLO")

    class Done(Node[Store]):
        async def service(self, store: Store) -> None:
            pass

    class Sub(Subflow[SubState, SubStore, State, Store]):
        async def pre_run_actions(self, parent_store: Store) -> None:
            await self.store.set_text("hello")

        async def post_run_actions(self, parent_store: Store) -> None:
            await parent_store.set_sub_result((await self.get_state()).text)

    def sub_graph() -> Graph:
        upper = Upper()
        return Graph(source=upper, sink=upper, edges=[])

    def graph() -> Graph:
        count, add, done = Count(), AddItem(), Done()
        sub = Sub(graph_factory=sub_graph, store_factory=lambda: SubStore(initial_state=SubState()),
                  name="the subflow")
        return Graph(source=count, sink=done, edges=[Edge(tail=count, head=add), Edge(tail=add, head=sub),
                                                     Edge(tail=sub, head=done)])

    workflow = Workflow[State, Store](name="demo workflow", graph_factory=graph,
                                      store_factory=lambda: Store(initial_state=State()))

    async def main() -> None:
        for _ in range(runs):
            await workflow.execute()

    asyncio.run(main())
    ok = exporter.flush(timeout_millis=20000)
    provider.shutdown()
    if not ok:
        sys.exit("otel_gen: flush failed")


# --- bulk synthetic spans -----------------------------------------------------------

def _s(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def bulk_spans(trace_no: int, nodes: int, base_ns: int) -> list[Span]:
    trace_id = (trace_no + 1).to_bytes(16, "big")
    wf_id = (trace_no * 1000 + 1).to_bytes(8, "big")
    start = base_ns + trace_no * 1_000_000
    spans = [Span(
        trace_id=trace_id, span_id=wf_id, name="bulk workflow", kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start, end_time_unix_nano=start + 900_000, status=Status(code=1),
        attributes=[_s("junjo.span_type", "workflow"), _s("junjo.id", f"wf{trace_no}"),
                    _s("junjo.workflow.state.start", '{"count":0}'),
                    _s("junjo.workflow.state.end", json.dumps({"count": nodes, "ratio": 0.5})),
                    _s("junjo.workflow.graph_structure", '{"nodes":[],"edges":[]}'),
                    _s("junjo.workflow.store.id", f"store{trace_no}")])]
    for n in range(nodes):
        t = start + (n + 1) * 10_000
        spans.append(Span(
            trace_id=trace_id, span_id=(trace_no * 1000 + n + 2).to_bytes(8, "big"), parent_span_id=wf_id,
            name=f"node {n}", kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=t,
            end_time_unix_nano=t + 5_000,
            attributes=[_s("junjo.span_type", "node"), _s("junjo.id", f"n{trace_no}.{n}"),
                        _s("junjo.parent_id", f"wf{trace_no}"),
                        KeyValue(key="n", value=AnyValue(int_value=n)),
                        KeyValue(key="score", value=AnyValue(double_value=n / 7))],
            events=[Span.Event(name="set_state", time_unix_nano=t + 1_000,
                               attributes=[_s("junjo.state_json_patch", f'[{{"op":"replace","path":"/count","value":{n}}}]'),
                                           _s("junjo.store.id", f"store{trace_no}")])]))
    return spans


def bulk_requests(total_spans: int, *, service: str = "bulk", spans_per_request: int = 512,
                  nodes: int = 9, base_ns: int = 1_700_000_000_000_000_000) -> Iterator[ExportTraceServiceRequest]:
    resource = Resource(attributes=[_s("service.name", service)])
    batch: list[Span] = []
    sent, trace_no = 0, 0
    while sent < total_spans:
        for span in bulk_spans(trace_no, nodes, base_ns)[: total_spans - sent]:
            batch.append(span)
            sent += 1
        trace_no += 1
        if len(batch) >= spans_per_request or sent >= total_spans:
            yield ExportTraceServiceRequest(resource_spans=[ResourceSpans(
                resource=resource, scope_spans=[ScopeSpans(spans=batch)])])
            batch = []


def send_bulk(endpoint: str, api_key: str, total_spans: int, service: str = "bulk") -> int:
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    with grpc.insecure_channel(endpoint) as channel:
        stub = TraceServiceStub(channel)
        count = 0
        for request in bulk_requests(total_spans, service=service):
            stub.Export(request, metadata=[("x-junjo-api-key", api_key)], timeout=30)
            count += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="span generators")
    sub = parser.add_subparsers(dest="mode", required=True)
    j = sub.add_parser("junjo")
    j.add_argument("--endpoint", required=True)
    j.add_argument("--api-key", default=os.environ.get("JUNJO_API_KEY", ""))
    j.add_argument("--service", default="junjo-demo")
    j.add_argument("--runs", type=int, default=1)
    j.add_argument("--llm", action="store_true", help="add an openinference LLM span to each run")
    b = sub.add_parser("bulk")
    b.add_argument("--endpoint", required=True)
    b.add_argument("--api-key", default=os.environ.get("JUNJO_API_KEY", ""))
    b.add_argument("--spans", type=int, default=10_000)
    b.add_argument("--service", default="bulk")
    args = parser.parse_args(argv)
    if args.mode == "junjo":
        run_junjo(args.endpoint, args.api_key, args.service, args.runs, args.llm)
    else:
        print(send_bulk(args.endpoint, args.api_key, args.spans, args.service))


if __name__ == "__main__":
    main()
