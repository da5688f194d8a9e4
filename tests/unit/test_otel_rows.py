"""Span + Resource → spans row, column by column (contract "Span + Resource → spans row")."""
from __future__ import annotations

import json
import uuid

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from services.common.gojson import go_float
from services.otel import gojson
from services.otel.rows import (
    NO_SERVICE_NAME,
    PATCH_COLUMNS,
    SPAN_COLUMNS,
    entry_to_row,
    patch_id,
    service_name_of,
    span_to_row,
)


def kv(key: str, value=None, **one) -> KeyValue:
    if one:
        return KeyValue(key=key, value=AnyValue(**one))
    if value is None:
        return KeyValue(key=key)  # value field entirely absent
    return KeyValue(key=key, value=value)


def s(key, v):
    return kv(key, string_value=v)


def row_of(span: Span, service="svc") -> dict:
    return span_to_row(span, service).as_dict()


def base_span(**fields) -> Span:
    defaults = dict(trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
                    span_id=bytes.fromhex("b7ad6b7169203331"), name="n",
                    start_time_unix_nano=1_700_000_000_123_456_789,
                    end_time_unix_nano=1_700_000_001_000_000_999)
    defaults.update(fields)
    return Span(**defaults)


# --- ids, names, kind, times, status --------------------------------------

def test_ids_hex_lowercase_and_parent_null_for_roots():
    r = row_of(base_span())
    assert r["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert r["span_id"] == "b7ad6b7169203331"
    assert r["parent_span_id"] is None


def test_parent_all_zero_bytes_is_not_null_and_odd_lengths_kept():
    r = row_of(base_span(parent_span_id=bytes(8), trace_id=b"\xAB\x01", span_id=b""))
    assert r["parent_span_id"] == "0000000000000000"
    assert r["trace_id"] == "ab01" and r["span_id"] == ""


def test_name_defaults_to_empty_string():
    assert row_of(Span())["name"] == ""


@pytest.mark.parametrize("kind,label", [(0, "UNSPECIFIED"), (1, "CLIENT"), (2, "SERVER"),
                                        (3, "INTERNAL"), (4, "PRODUCER"), (5, "CONSUMER"),
                                        (9, "UNSPECIFIED")])
def test_kind_labels_keep_the_legacy_swap(kind, label):
    assert row_of(base_span(kind=kind))["kind"] == label


def test_times_floor_to_microseconds_and_unset_is_epoch():
    r = row_of(base_span())
    assert r["start_time"] == 1_700_000_000_123_456
    assert r["end_time"] == 1_700_000_001_000_000
    assert row_of(Span())["start_time"] == 0


def test_time_above_int64_reads_as_negative_and_floors():
    r = row_of(base_span(start_time_unix_nano=(1 << 64) - 1))  # int64 -1 ns
    assert r["start_time"] == -1


def test_status_absent_present_and_unknown():
    assert row_of(base_span())["status_code"] == ""
    assert row_of(base_span())["status_message"] == ""
    r = row_of(base_span(status=Status()))
    assert r["status_code"] == "STATUS_CODE_UNSET"
    r = row_of(base_span(status=Status(code=2, message="boom")))
    assert (r["status_code"], r["status_message"]) == ("STATUS_CODE_ERROR", "boom")
    assert row_of(base_span(status=Status(code=1)))["status_code"] == "STATUS_CODE_OK"
    unknown = Status()
    unknown.MergeFromString(b"\x18\x07")  # field 3 (code) = 7
    assert row_of(base_span(status=unknown))["status_code"] == "7"


def test_flags_trace_state_links():
    r = row_of(base_span(flags=0x301, trace_state="k=v"))
    assert r["trace_flags"] == 0x301 and r["trace_state"] == "k=v"
    r = row_of(base_span())
    assert r["trace_flags"] == 0 and r["trace_state"] is None
    assert r["links_json"] == "[]"


# --- attributes -----------------------------------------------------------

def test_attribute_conversion_types_and_go_text():
    span = base_span(attributes=[
        s("str", 'a"b\\<>&\u2028\n\b\f\x01é'),
        kv("bool", bool_value=True),
        kv("int", int_value=-(1 << 63)),
        kv("f_int", double_value=1.0),
        kv("f_big", double_value=1e21),
        kv("f_small", double_value=1.5e-7),
        kv("f_pos", double_value=0.000001),
        kv("f_negzero", double_value=-0.0),
        kv("bytes", bytes_value=b"\x00\xff"),
        kv("arr", array_value=ArrayValue(values=[AnyValue(string_value="x"), AnyValue(int_value=2),
                                                  AnyValue(bytes_value=b"z"), AnyValue(double_value=2.5),
                                                  AnyValue(bool_value=False)])),
        kv("arr_empty", array_value=ArrayValue()),
        kv("arr_dropped", array_value=ArrayValue(values=[AnyValue(bytes_value=b"z")])),
        kv("kv", kvlist_value=KeyValueList(values=[s("b", "1"), kv("a", int_value=1),
                                                   kv("c", bytes_value=b"x")])),
        kv("kv_empty", kvlist_value=KeyValueList()),
        kv("unset", AnyValue()),
        kv("absent"),
    ])
    text = row_of(span)["attributes_json"]
    assert text == (
        '{"arr":["x",2,2.5,false],"arr_dropped":null,"arr_empty":null,"bool":true,'
        '"bytes":"00ff","f_big":1e+21,"f_int":1,"f_negzero":-0,"f_pos":0.000001,'
        '"f_small":1.5e-7,"int":-9223372036854775808,"kv":{"a":1,"b":"1"},"kv_empty":{},'
        '"str":"a\\"b\\\\\\u003c\\u003e\\u0026\\u2028\\n\\b\\f\\u0001é"}'
    )


def test_attributes_default_repeated_key_last_wins_and_removed_keys():
    assert row_of(base_span())["attributes_json"] == "{}"
    span = base_span(attributes=[
        s("k", "first"), s("k", "last"), kv("k"),
        s("junjo.workflow_id", "w"), s("node.id", "n"), s("junjo.id", "j"),
        s("junjo.parent_id", "p"), s("junjo.span_type", "node"),
        s("junjo.workflow.state.start", "{}"), s("junjo.workflow.state.end", "{}"),
        s("junjo.workflow.graph_structure", "{}"), s("junjo.workflow.store.id", "s"),
        s("junjo.other", "stays"),
    ])
    assert json.loads(row_of(span)["attributes_json"]) == {"k": "last", "junjo.other": "stays"}


def test_nan_and_inf_become_null_instead_of_failing_the_batch():
    span = base_span(attributes=[kv("nan", double_value=float("nan")),
                                 kv("inf", double_value=float("inf"))])
    assert row_of(span)["attributes_json"] == '{"inf":null,"nan":null}'


# --- junjo columns ----------------------------------------------------------

def test_junjo_columns_first_string_wins():
    span = base_span(attributes=[kv("junjo.id", int_value=1), s("junjo.id", "id1"), s("junjo.id", "id2"),
                                 s("junjo.parent_id", "p"), s("junjo.span_type", "node")])
    r = row_of(span)
    assert (r["junjo_id"], r["junjo_parent_id"], r["junjo_span_type"]) == ("id1", "p", "node")
    assert r["junjo_wf_state_start"] == r["junjo_wf_state_end"] == r["junjo_wf_graph_structure"] == "{}"
    assert r["junjo_wf_store_id"] == ""


def test_no_junjo_attributes_defaults():
    r = row_of(base_span())
    assert (r["junjo_id"], r["junjo_parent_id"], r["junjo_span_type"]) == ("", "", "")
    assert r["junjo_wf_store_id"] == ""


@pytest.mark.parametrize("span_type", ["workflow", "subflow"])
def test_workflow_columns_verbatim(span_type):
    start = '{ "b": 1.0, "a": [1,2] }'
    span = base_span(attributes=[s("junjo.span_type", span_type), s("junjo.workflow.state.start", start),
                                 s("junjo.workflow.state.end", '{"x":1}'),
                                 s("junjo.workflow.graph_structure", '{"nodes":[]}'),
                                 s("junjo.workflow.store.id", "store-1")])
    r = row_of(span)
    assert r["junjo_wf_state_start"] == start  # verbatim, whitespace and order as given
    assert r["junjo_wf_state_end"] == '{"x":1}'
    assert r["junjo_wf_graph_structure"] == '{"nodes":[]}'
    assert r["junjo_wf_store_id"] == "store-1"


def test_workflow_without_state_and_store_quirk():
    r = row_of(base_span(attributes=[s("junjo.span_type", "workflow"),
                                     kv("junjo.workflow.state.start", int_value=3)]))
    assert r["junjo_wf_state_start"] == "{}"
    assert r["junjo_wf_store_id"] == "{}"  # *quirk*: the text {} for a missing store id


def test_workflow_state_that_is_not_json_becomes_empty_object():
    r = row_of(base_span(attributes=[s("junjo.span_type", "workflow"),
                                     s("junjo.workflow.state.start", "not json")]))
    assert r["junjo_wf_state_start"] == "{}"


def test_state_with_a_lone_surrogate_escape_becomes_empty_object():
    # Python's json accepts "\ud83d" (a cut emoji); DuckDB's JSON cast doesn't,
    # and one such span used to block the poller's cursor for good.
    r = row_of(base_span(attributes=[s("junjo.span_type", "workflow"),
                                     s("junjo.workflow.state.start", '{"user_input":"\\ud83d"}')]))
    assert r["junjo_wf_state_start"] == "{}"


def test_a_row_duckdb_rejects_is_dropped_alone_and_the_cursor_moves(tmp_path):
    import dataclasses

    from services.otel.store import SpanStore

    store = SpanStore(str(tmp_path / "o.duckdb"))
    good = [span_to_row(base_span(span_id=bytes([i]) * 8), "svc") for i in range(1, 4)]
    bad = span_to_row(base_span(span_id=b"\x09" * 8), "svc")
    values = dict(zip(SPAN_COLUMNS, bad.values))
    values["attributes_json"] = '{"broken": '  # invalid JSON slipped past the mapping
    bad = dataclasses.replace(bad, values=tuple(values[c] for c in SPAN_COLUMNS))
    assert store.ingest([good[0], bad, good[1], good[2]], b"\x01" * 16) == 3
    assert store.count() == 3
    assert store.fetch("SELECT last_key FROM poller_state", ())[0][0] == b"\x01" * 16


# --- events and state patches ----------------------------------------------

def test_events_json_shape_exact_integers_and_unfiltered_attributes():
    ev = Span.Event(time_unix_nano=1_700_000_000_123_456_789, name="set_state",
                    dropped_attributes_count=2,
                    attributes=[s("junjo.id", "kept"), kv("x", double_value=0.5)])
    text = row_of(base_span(events=[ev, Span.Event()]))["events_json"]
    assert text == ('[{"attributes":{"junjo.id":"kept","x":0.5},"droppedAttributesCount":2,'
                    '"name":"set_state","timeUnixNano":1700000000123456789},'
                    '{"attributes":{},"droppedAttributesCount":0,"name":"","timeUnixNano":0}]')
    assert row_of(base_span())["events_json"] == "[]"


def _patch_span(span_type: str) -> Span:
    return base_span(
        attributes=[s("junjo.id", "J"), s("junjo.span_type", span_type)],
        events=[
            Span.Event(name="set_state", time_unix_nano=1_000_999,
                       attributes=[s("junjo.state_json_patch", '[{"op":"add"}]'), s("junjo.store.id", "st")]),
            Span.Event(name="other"),
            Span.Event(name="set_state", time_unix_nano=5_000),
        ])


def test_state_patches_for_node_span():
    row = span_to_row(_patch_span("node"), "svc")
    assert len(row.patches) == 2
    p0, p1 = (dict(zip(PATCH_COLUMNS, p)) for p in row.patches)
    assert p0["service_name"] == "svc"
    assert (p0["trace_id"], p0["span_id"]) == row.key
    assert (p0["workflow_id"], p0["node_id"]) == ("", "J")
    assert p0["event_time"] == 1_000
    assert (p0["patch_json"], p0["patch_store_id"]) == ('[{"op":"add"}]', "st")
    assert (p1["patch_json"], p1["patch_store_id"]) == ("{}", "")
    assert uuid.UUID(p0["patch_id"]).version == 4 and len(p0["patch_id"]) == 36


def test_state_patches_workflow_id_and_deterministic_ids():
    a = span_to_row(_patch_span("workflow"), "svc")
    b = span_to_row(_patch_span("workflow"), "svc")
    p0 = dict(zip(PATCH_COLUMNS, a.patches[0]))
    assert (p0["workflow_id"], p0["node_id"]) == ("J", "")
    assert [p[0] for p in a.patches] == [p[0] for p in b.patches]  # re-read → same ids
    assert a.patches[0][0] != a.patches[1][0]
    assert a.patches[0][0] == patch_id(a.key[0], a.key[1], 0)


# --- service name and WAL entries -----------------------------------------------

def test_service_name_rules():
    assert service_name_of(Resource(attributes=[kv("service.name", int_value=1), s("service.name", "svc")])) == "svc"
    assert service_name_of(Resource(attributes=[s("service.name", "")])) == NO_SERVICE_NAME
    assert service_name_of(Resource()) == NO_SERVICE_NAME
    assert service_name_of(None) == NO_SERVICE_NAME


def test_entry_to_row_uses_each_span_own_resource_and_skips_garbage():
    res = Resource(attributes=[s("service.name", "a b/ü")]).SerializeToString()
    row = entry_to_row(base_span().SerializeToString(), res)
    assert row.as_dict()["service_name"] == "a b/ü"
    assert entry_to_row(base_span().SerializeToString(), b"\xff\xff")\
        .as_dict()["service_name"] == NO_SERVICE_NAME
    assert entry_to_row(b"\x0a\xff", res) is None


# --- Go JSON re-encoding (serving side) ----------------------------------------

@pytest.mark.parametrize("f,text", [(1.0, "1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
                                    (1.5e-7, "1.5e-7"), (5e-324, "5e-324"), (-0.0, "-0"),
                                    (0.000001, "0.000001"), (123.456, "123.456"),
                                    (1.7000000001234568e18, "1700000000123456800")])
def test_go_float(f, text):
    assert go_float(f) == text


def test_parse_as_go_float64_view():
    flags = gojson.new_flags()
    v = gojson.parse_as_go('{"t":1700000000123456789,"one":1.0,"big":1e400,"s":2.5e-5}', flags)
    assert gojson.dumps(v, odd_floats=flags.odd) == \
        b'{"big":null,"one":1,"s":0.000025,"t":1700000000123456800}\n'
    assert gojson.parse_as_go('{"a":NaN}') is None
    assert gojson.parse_as_go('[1,]') is None
    assert gojson.dumps({"b": [], "a": {}}, pretty=True) == b'{\n  "a": {},\n  "b": []\n}\n'
