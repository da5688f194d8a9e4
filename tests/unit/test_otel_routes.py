"""The six /otel routes: in-process (filters, ordering, limits, bytes), through the
real gateway with two workers while the poller writes, and parity with the Go
stand-in serving the same rows."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from services.common.protect import protect
from services.common.settings import settings_from_env
from services.otel.app import OtelApp
from tests.support.otel_spans import CODEC, OTHER, SECRET, SVC, cookie, serving_pipeline, sid, tid


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    yield from serving_pipeline(tmp_path_factory)

@pytest.fixture(scope="module")
def client(pipeline):
    settings = settings_from_env({"JUNJO_SESSION_SECRET": SECRET})
    app = protect(OtelApp(lambda: pipeline), codec=CODEC, settings=lambda: settings)
    yield TestClient(app)  # no lifespan: the gateway runs the pipeline's start/stop hooks


def get(client, path, **kw):
    return client.get(path, headers={"Cookie": cookie()}, **kw)


def names(r):
    return [x["name"] for x in r.json()]


def test_service_names_sorted(client):
    r = get(client, "/otel/span-service-names")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.content == '["many","other service","svc a/b ü","ü x"]\n'.encode()


def test_root_spans_newest_first_only_roots(client):
    r = get(client, f"/otel/service/{quote(SVC, safe='')}/root-spans")
    assert names(r) == ["wf", "not llm", "older root"]
    assert get(client, "/otel/service/nobody/root-spans").content == b"[]\n"


def test_root_spans_limit_500(client):
    r = get(client, "/otel/service/many/root-spans")
    assert len(r.json()) == 500 and names(r)[0] == "r509" and names(r)[-1] == "r10"


def test_root_spans_filtered_across_services_exact_llm(client):
    r = get(client, f"/otel/service/{quote(SVC, safe='')}/root-spans-filtered")
    assert names(r) == ["older root"]
    assert get(client, f"/otel/service/{quote(OTHER)}/root-spans-filtered").content == b"[]\n"


def test_nested_spans_whole_trace_descending(client):
    r = get(client, f"/otel/trace/{tid(1)}/nested-spans")
    assert names(r) == ["child b", "child a", "wf"]
    assert names(get(client, f"/otel/trace/{tid(0xABC)}/nested-spans")) == ["orphan"]
    assert get(client, f"/otel/trace/{tid(0xABC).upper()}/nested-spans").content == b"[]\n"  # no normalising


def test_one_span_exact_bytes(client):
    r = get(client, f"/otel/trace/{tid(1)}/span/{sid(1)}")
    expected = (
        '{"attributes_json":{"ratio":0.000025},"end_time":"2023-11-14T22:13:20.003001Z",'
        '"events_json":[{"attributes":{"junjo.state_json_patch":"[]"},"droppedAttributesCount":0,'
        '"name":"set_state","timeUnixNano":1700000000123456800}],'
        '"junjo_id":"W1","junjo_parent_id":"","junjo_span_type":"workflow",'
        '"junjo_wf_graph_structure":{},"junjo_wf_state_end":{"big":1700000000123456800,"tiny":1e-7,'
        '"x":"\\u003c\\u0026\\u003e"},"junjo_wf_state_start":{"a":1},"junjo_wf_store_id":"{}",'
        '"kind":"UNSPECIFIED","links_json":[],"name":"wf","parent_span_id":null,'
        f'"service_name":"svc a/b ü","span_id":"{sid(1)}","start_time":"2023-11-14T22:13:20.003Z",'
        f'"status_code":"","status_message":"","trace_flags":0,"trace_id":"{tid(1)}","trace_state":null}}\n'
    )
    assert r.content.decode() == expected


def test_one_span_trace_state_flags_and_missing(client):
    one = get(client, f"/otel/trace/{tid(4)}/span/{sid(30)}").json()
    assert (one["trace_state"], one["trace_flags"], one["start_time"]) == ("k=v", 1, "2023-11-14T22:13:20Z")
    assert get(client, f"/otel/trace/{tid(4)}/span/{sid(31)}").content == b"null\n"


def test_workflow_spans(client):
    r = get(client, f"/otel/spans/type/workflow/{quote(SVC, safe='')}")
    assert names(r) == ["wf"]


def test_pretty(client):
    r = get(client, "/otel/span-service-names?pretty")
    assert r.content == '[\n  "many",\n  "other service",\n  "svc a/b ü",\n  "ü x"\n]\n'.encode()
    r = get(client, f"/otel/trace/{tid(4)}/span/{sid(31)}?x=1&pretty=0")
    assert r.content == b"null\n"


def test_errors(client):
    assert get(client, "/otel/service//root-spans").json() == {"error": "serviceName parameter is required"}
    assert get(client, "/otel/service//root-spans").status_code == 400
    assert get(client, f"/otel/trace//span/{sid(1)}").json() == {"error": "traceId parameter is required"}
    # Echo never matches an empty trailing param: 404, as the stand-in answers.
    r = get(client, f"/otel/trace/{tid(1)}/span/")
    assert (r.status_code, r.json()) == (404, {"message": "Not Found"})
    # ... and a trailing param takes the rest of the path, '/' included (Go: 200 null).
    r = get(client, f"/otel/trace/{tid(1)}/span/{sid(1)}/extra")
    assert (r.status_code, r.content) == (200, b"null\n")
    assert get(client, "/otel/service//root-spans?pretty").content == \
        b'{\n  "error": "serviceName parameter is required"\n}\n'
    assert get(client, "/otel/nope").status_code == 404
    assert get(client, "/otel/span-service-names/").status_code == 404
    r = client.get("/otel/span-service-names")
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized: No valid session"}
    r = client.post("/otel/span-service-names", headers={"Cookie": cookie()})
    assert r.status_code == 405


def test_percent_2f_and_unicode_service_names(client):
    raw = "/otel/service/svc%20a%2Fb%20%C3%BC/root-spans"
    assert names(get(client, raw)) == ["wf", "not llm", "older root"]
