"""A fake of the legacy ingestion service (contract, "The span pipeline").

* public OTLP: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``
  behind the ``x-junjo-api-key`` check, which asks ``ValidateApiKey`` on
  ``auth_addr`` (5 s deadline, wait-for-ready) and caches valid keys.
* internal: ``ingestion.InternalIngestionService/ReadSpans`` over an in-memory
  WAL: 16-byte monotonic ULID keys, one entry per span (span bytes + the
  enclosing resource's bytes), exclusive start key, ``batch_size`` cap, one
  consistent snapshot per call, undecodable entries skipped but counted.

    fake = FakeIngestion(auth_addr="127.0.0.1:50053").start()
    fake.otlp_addr, fake.internal_addr ... fake.stop()

``start(startup_check=True)`` behaves like the real service at boot: it opens
neither port until one ``ValidateApiKey("startup-readiness-check")`` call
(wait-for-ready) got an answer, and an error status there is fatal. The real
call has no deadline; the fake's is ``startup_timeout`` so a test cannot hang.

Runnable: ``python -m tests.fake_ingestion --otlp-port 50051 --internal-port 50052``.
"""
from __future__ import annotations

import argparse
import bisect
import os
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from services.otel.proto import ingestion_pb2, ingestion_pb2_grpc


class UlidGenerator:
    """oklog/ulid's monotonic entropy: same ms → previous + 1, so order = arrival."""

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_entropy = 0
        self._lock = threading.Lock()

    def new(self) -> bytes:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms, entropy = self._last_ms, self._last_entropy + 1
            else:
                entropy = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms, self._last_entropy = ms, entropy
            return ms.to_bytes(6, "big") + entropy.to_bytes(10, "big")


class Wal:
    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[tuple[bytes, bytes]] = []
        self._ulid = UlidGenerator()
        self._lock = threading.Lock()

    def append(self, span_bytes: bytes, resource_bytes: bytes) -> bytes:
        with self._lock:
            key = self._ulid.new()
            self.keys.append(key)
            self.values.append((span_bytes, resource_bytes))
            return key

    def append_many(self, entries: list[tuple[bytes, bytes]]) -> None:
        with self._lock:
            for span_bytes, resource_bytes in entries:
                self.keys.append(self._ulid.new())
                self.values.append((span_bytes, resource_bytes))

    def read(self, start_key: bytes, batch_size: int) -> list[tuple[bytes, bytes, bytes]]:
        with self._lock:  # one consistent snapshot
            keys, n = self.keys, len(self.keys)
            first = 0 if not start_key else bisect.bisect_left(keys, start_key + b"\x00", 0, n)
            picked = [(keys[i], *self.values[i]) for i in range(first, min(n, first + batch_size))]
        return picked

    def __len__(self) -> int:
        return len(self.keys)


class _Ingestion(ingestion_pb2_grpc.InternalIngestionServiceServicer):
    def __init__(self, wal: Wal, fake: FakeIngestion) -> None:
        self.wal, self.fake = wal, fake

    def ReadSpans(self, request, context):
        self.fake.read_calls += 1
        if self.fake.fail_reads:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake: reads disabled")
        for key, span_bytes, resource_bytes in self.wal.read(request.start_key_ulid, request.batch_size):
            try:  # "the bytes sent are the stored messages decoded and re-encoded"
                span = Span.FromString(span_bytes).SerializeToString()
            except Exception:
                continue  # undecodable: skipped, but it counted toward batch_size
            yield ingestion_pb2.ReadSpansResponse(key_ulid=key, span_bytes=span,
                                                  resource_bytes=resource_bytes)


class _Trace(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, wal: Wal, fake: FakeIngestion) -> None:
        self.wal, self.fake = wal, fake

    def Export(self, request, context):
        self.fake.check_api_key(context)
        entries = []
        for rs in request.resource_spans:
            resource = rs.resource.SerializeToString() if rs.HasField("resource") else b""
            for ss in rs.scope_spans:
                for span in ss.spans:
                    entries.append((span.SerializeToString(), resource))
        self.wal.append_many(entries)
        return trace_service_pb2.ExportTraceServiceResponse()


class FakeIngestion:
    CACHE_TTL = 3600.0

    def __init__(self, auth_addr: str | None = None, *, host: str = "127.0.0.1",
                 otlp_port: int = 0, internal_port: int = 0) -> None:
        self.wal = Wal()
        self.auth_addr = auth_addr
        self.fail_reads = False
        self.read_calls = 0
        self.startup_answer: bool | None = None  # what the start-up ValidateApiKey call got
        self._cache: dict[str, float] = {}
        self._auth_channel = grpc.insecure_channel(auth_addr) if auth_addr else None
        self._auth = ingestion_pb2_grpc.InternalAuthServiceStub(self._auth_channel) if auth_addr else None
        self.otlp = grpc.server(futures.ThreadPoolExecutor(8))
        self.internal = grpc.server(futures.ThreadPoolExecutor(8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Trace(self.wal, self), self.otlp)
        ingestion_pb2_grpc.add_InternalIngestionServiceServicer_to_server(_Ingestion(self.wal, self), self.internal)
        self.otlp_port = self.otlp.add_insecure_port(f"{host}:{otlp_port}")
        self.internal_port = self.internal.add_insecure_port(f"{host}:{internal_port}")
        self.otlp_addr = f"{host}:{self.otlp_port}"
        self.internal_addr = f"{host}:{self.internal_port}"

    def check_api_key(self, context) -> None:
        if self._auth is None:
            return
        metadata = context.invocation_metadata()
        if not metadata:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "metadata is not provided")
        keys = [v for k, v in metadata if k == "x-junjo-api-key"]
        if not keys:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "x-junjo-api-key is not provided")
        key = keys[0]
        if self._cache.get(key, 0) > time.monotonic():
            return
        try:
            reply = self._auth.ValidateApiKey(ingestion_pb2.ValidateApiKeyRequest(api_key=key),
                                              timeout=5, wait_for_ready=True)
        except grpc.RpcError:
            context.abort(grpc.StatusCode.INTERNAL, "failed to validate API key")
        if not reply.is_valid:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        self._cache[key] = time.monotonic() + self.CACHE_TTL

    STARTUP_KEY = "startup-readiness-check"

    def start(self, *, startup_check: bool = False, startup_timeout: float = 60.0) -> FakeIngestion:
        if startup_check:
            self.startup_answer = self.check_auth_at_startup(startup_timeout)
        self.otlp.start()
        self.internal.start()
        return self

    def check_auth_at_startup(self, timeout: float) -> bool:
        """The real service's first call: any answer will do, an error status is fatal."""
        assert self._auth is not None, "startup_check needs auth_addr"
        request = ingestion_pb2.ValidateApiKeyRequest(api_key=self.STARTUP_KEY)
        reply = self._auth.ValidateApiKey(request, timeout=timeout, wait_for_ready=True)  # RpcError: fatal
        return reply.is_valid

    def stop(self) -> None:
        self.otlp.stop(0)
        self.internal.stop(0)
        if self._auth_channel is not None:
            self._auth_channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--otlp-port", type=int, default=50051)
    parser.add_argument("--internal-port", type=int, default=50052)
    parser.add_argument("--auth-addr", default=None, help="ValidateApiKey server; none = no key check")
    args = parser.parse_args()
    fake = FakeIngestion(args.auth_addr, otlp_port=args.otlp_port, internal_port=args.internal_port).start()
    print(f"fake ingestion: OTLP {fake.otlp_addr}, internal {fake.internal_addr}", flush=True)
    try:
        fake.otlp.wait_for_termination()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
