"""Request ids and trace context stamped at the edge (gateway/ops/tracing.py)."""
from __future__ import annotations

import re

from gateway.ops.tracing import tag_request

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def scope(*headers: tuple[bytes, bytes]) -> dict:
    return {"headers": [(b"host", b"h"), *headers]}


def test_without_either_header_both_are_added_in_place_in_that_order():
    s = scope()
    original = s["headers"]
    request_id, trace_id = tag_request(s)
    assert s["headers"] is original  # the request's own list: appended to, not copied
    names = [n for n, _ in s["headers"]]
    assert names == [b"host", b"x-request-id", b"traceparent"]
    assert re.fullmatch(rb"[0-9a-f]{32}", trace_id) and request_id == trace_id
    assert re.fullmatch(rb"00-" + trace_id + rb"-[0-9a-f]{16}-01", dict(s["headers"])[b"traceparent"])


def test_new_ids_are_unique_and_never_all_zeros():
    seen = set()
    for _ in range(2000):
        s = scope()
        _, trace_id = tag_request(s)
        span = dict(s["headers"])[b"traceparent"].split(b"-")[2]
        assert trace_id != b"0" * 32 and span != b"0" * 16
        seen.add(trace_id)
    assert len(seen) == 2000


def test_valid_headers_are_kept_and_nothing_is_added():
    s = scope((b"x-request-id", b"abc-123"), (b"traceparent", TRACEPARENT.encode()))
    before = list(s["headers"])
    assert tag_request(s) == (b"abc-123", b"0af7651916cd43dd8448eb211c80319c")
    assert s["headers"] == before


def test_invalid_headers_are_replaced_not_forwarded():
    s = scope((b"x-request-id", b"bad id"), (b"traceparent", b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01"))
    request_id, trace_id = tag_request(s)
    assert b"bad id" not in dict(s["headers"]).values()
    assert [n for n, _ in s["headers"]].count(b"traceparent") == 1
    assert trace_id != b"0" * 32 and request_id == trace_id


def test_a_valid_request_id_with_a_new_trace():
    s = scope((b"x-request-id", b"req-7"))
    request_id, trace_id = tag_request(s)
    assert request_id == b"req-7" and trace_id != request_id
    assert [n for n, _ in s["headers"]] == [b"host", b"x-request-id", b"traceparent"]
