"""OTLP Span + Resource → a legacy ``spans`` row (and its ``state_patches``).

Column by column as the legacy poller writes them (contract, "Span + Resource
→ spans row"), with the quirks the frontend sees kept (kind labels swapped,
``{}`` defaults, Go JSON text, µs floor) and the ones that lose data fixed:

* ``service_name`` comes from each span's own resource, not the batch's first.
* A double that is NaN/±Inf becomes ``null`` instead of failing the batch.
* A junjo state/graph/patch string that is not JSON becomes ``{}`` instead of
  failing the batch (a warning is logged).
* ``state_patches.patch_id`` is a UUID (v4 layout) derived from trace id, span
  id and the event's index, so re-reading a span never duplicates its patches.

See docs/migrating-traces.md for the full list.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from services.common.gojson import encode as go_json_text

log = logging.getLogger(__name__)

NO_SERVICE_NAME = "NO_SERVICE_NAME"

SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "service_name", "name", "kind",
    "start_time", "end_time", "status_code", "status_message",
    "attributes_json", "events_json", "links_json", "trace_flags", "trace_state",
    "junjo_id", "junjo_parent_id", "junjo_span_type",
    "junjo_wf_state_start", "junjo_wf_state_end", "junjo_wf_graph_structure",
    "junjo_wf_store_id",
)
JSON_COLUMNS = frozenset({"attributes_json", "events_json", "links_json", "junjo_wf_state_start",
                          "junjo_wf_state_end", "junjo_wf_graph_structure"})
TIME_COLUMNS = frozenset({"start_time", "end_time"})
PATCH_COLUMNS = ("patch_id", "service_name", "trace_id", "span_id", "workflow_id", "node_id",
                 "event_time", "patch_json", "patch_store_id")

# *Quirk* kept: the legacy maps OTLP's numbers with INTERNAL and CLIENT swapped.
KIND_LABELS = {1: "CLIENT", 2: "SERVER", 3: "INTERNAL", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_LABELS = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}

REMOVED_KEYS = frozenset({
    "junjo.workflow_id", "node.id", "junjo.id", "junjo.parent_id", "junjo.span_type",
    "junjo.workflow.state.start", "junjo.workflow.state.end",
    "junjo.workflow.graph_structure", "junjo.workflow.store.id",
})
WORKFLOW_TYPES = frozenset({"workflow", "subflow"})
_MISSING = object()


@dataclass(frozen=True)
class SpanRow:
    """One ``spans`` row; ``start_us``/``end_us`` are µs since the epoch."""
    values: tuple  # in SPAN_COLUMNS order; times as int µs
    patches: tuple[tuple, ...]  # in PATCH_COLUMNS order; event_time as int µs

    @property
    def key(self) -> tuple[str, str]:
        return self.values[0], self.values[1]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(SPAN_COLUMNS, self.values))


# --- AnyValue → JSON -----------------------------------------------------

def _scalar(v: AnyValue) -> Any:
    """string/bool/int/double, or _MISSING for anything else (dropped in containers)."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return _double(v.double_value)
    return _MISSING


def _double(f: float) -> Any:
    # Legacy: json.Marshal fails on NaN/±Inf and the whole batch is lost. We keep the span.
    return None if f != f or f in (float("inf"), float("-inf")) else f


def convert_value(v: AnyValue) -> Any:
    """The JSON value of an attribute, or _MISSING when no value is set."""
    which = v.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return _scalar(v)
    if which == "bytes_value":
        return v.bytes_value.hex()
    if which == "array_value":
        items = [s for s in map(_scalar, v.array_value.values) if s is not _MISSING]
        return items or None  # *quirk* kept: nothing kept → null
    if which == "kvlist_value":
        out: dict[str, Any] = {}
        for kv in v.kvlist_value.values:
            s = _scalar(kv.value) if kv.HasField("value") else _MISSING
            if s is not _MISSING:
                out[kv.key] = s
        return out
    return _MISSING


def convert_attributes(attrs: Iterable[KeyValue], removed: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in attrs:
        if kv.key in removed or not kv.HasField("value"):
            continue
        value = convert_value(kv.value)
        if value is not _MISSING:
            out[kv.key] = value  # a repeated key: the last one wins
    return out


def first_string(attrs: Iterable[KeyValue], key: str) -> str | None:
    """The first attribute ``key`` whose value is a string (the column extractors' rule)."""
    for kv in attrs:
        if kv.key == key and kv.HasField("value") and kv.value.WhichOneof("value") == "string_value":
            return kv.value.string_value
    return None


# --- helpers ---------------------------------------------------------------

def unix_nano_to_us(ns: int) -> int:
    """The unix_nano value read as a signed int64, floored to µs."""
    if ns >= 1 << 63:
        ns -= 1 << 64
    return ns // 1000


def service_name_of(resource: Resource | None) -> str:
    if resource is None:
        return NO_SERVICE_NAME
    return first_string(resource.attributes, "service.name") or NO_SERVICE_NAME


def parse_resource(data: bytes) -> Resource | None:
    resource = Resource()
    try:
        resource.ParseFromString(data)
    except Exception:  # DecodeError and friends
        return None
    return resource


def _json_text(value: str | None, what: str, span: Span) -> str:
    """A junjo JSON string stored verbatim when it parses, else ``{}``."""
    if value is None:
        return "{}"
    try:
        # json.loads accepts a lone surrogate escape ("\ud83d", a cut emoji)
        # that DuckDB's JSON cast rejects; re-encoding to UTF-8 catches it.
        json.dumps(json.loads(value), ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        log.warning("span %s/%s: %s is not JSON; stored as {}", span.trace_id.hex(),
                    span.span_id.hex(), what)
        return "{}"
    return value


def _status_code(span: Span) -> str:
    if not span.HasField("status"):
        return ""
    code = int(span.status.code)
    return STATUS_LABELS.get(code, str(code))


def patch_id(trace_id: str, span_id: str, index: int) -> str:
    """Deterministic UUID (v4 layout) for a span's index-th event."""
    digest = hashlib.sha256(f"{trace_id}\x00{span_id}\x00{index}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _events(span: Span) -> list[dict[str, Any]]:
    return [
        {"attributes": convert_attributes(ev.attributes),
         "droppedAttributesCount": ev.dropped_attributes_count,
         "name": ev.name,
         "timeUnixNano": ev.time_unix_nano}
        for ev in span.events
    ]


def _int32(flags: int) -> int:
    # trace_flags is an INTEGER column; a fixed32 above 2^31 would not fit.
    return flags - (1 << 32) if flags >= 1 << 31 else flags


# --- the mapping ---------------------------------------------------------

def span_to_row(span: Span, service_name: str) -> SpanRow:
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    attrs = span.attributes
    junjo_id = first_string(attrs, "junjo.id") or ""
    span_type = first_string(attrs, "junjo.span_type") or ""
    if span_type in WORKFLOW_TYPES:
        state_start = _json_text(first_string(attrs, "junjo.workflow.state.start"), "state.start", span)
        state_end = _json_text(first_string(attrs, "junjo.workflow.state.end"), "state.end", span)
        graph = _json_text(first_string(attrs, "junjo.workflow.graph_structure"), "graph_structure", span)
        store_id = first_string(attrs, "junjo.workflow.store.id")
        store_id = "{}" if store_id is None else store_id  # *quirk* kept
    else:
        state_start = state_end = graph = "{}"
        store_id = ""
    values = (
        trace_id,
        span_id,
        span.parent_span_id.hex() if span.parent_span_id else None,
        service_name,
        span.name,
        KIND_LABELS.get(int(span.kind), "UNSPECIFIED"),
        unix_nano_to_us(span.start_time_unix_nano),
        unix_nano_to_us(span.end_time_unix_nano),
        _status_code(span),
        span.status.message if span.HasField("status") else "",
        go_json_text(convert_attributes(attrs, REMOVED_KEYS)),
        go_json_text(_events(span)),
        "[]",
        _int32(span.flags),
        span.trace_state or None,
        junjo_id,
        first_string(attrs, "junjo.parent_id") or "",
        span_type,
        state_start,
        state_end,
        graph,
        store_id,
    )
    patches = []
    for index, ev in enumerate(span.events):
        if ev.name != "set_state":
            continue
        patch = first_string(ev.attributes, "junjo.state_json_patch")
        patches.append((
            patch_id(trace_id, span_id, index),
            service_name,
            trace_id,
            span_id,
            junjo_id if span_type == "workflow" else "",
            junjo_id if span_type == "node" else "",
            unix_nano_to_us(ev.time_unix_nano),
            _json_text(patch, "junjo.state_json_patch", span),
            first_string(ev.attributes, "junjo.store.id") or "",
        ))
    return SpanRow(values, tuple(patches))


def entry_to_row(span_bytes: bytes, resource_bytes: bytes) -> SpanRow | None:
    """One WAL entry → a row; None when the span does not decode (skipped, as legacy)."""
    span = Span()
    try:
        span.ParseFromString(span_bytes)
    except Exception:
        log.warning("skipping a WAL entry whose span does not decode")
        return None
    return span_to_row(span, service_name_of(parse_resource(resource_bytes)))
