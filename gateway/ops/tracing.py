"""Request ids and W3C trace context, stamped on every request at the edge.

``X-Request-Id`` from the client is kept when it is a sane token, else the
trace id is used; ``traceparent`` is passed through when valid, else a new
trace is started. Both are added to the request's headers (so the Go backend and the
Python services see them) and the request id is echoed on the response.
"""
from __future__ import annotations

import random
import re

from starlette.types import Scope

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_ZERO_TRACE = b"0" * 32


def tag_request(scope: Scope) -> tuple[bytes, bytes]:
    """Ensure the scope carries x-request-id and traceparent; return (request id, trace id).

    Runs on every request: the common case (neither header, or both valid) is
    one pass over the headers and an append to the list in place (the scope's
    header list is this request's own), never a copy."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    request_id: bytes | None = None
    trace_id: bytes | None = None
    invalid = False  # an x-request-id or traceparent we drop
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.match(value):
                request_id = value
            else:
                invalid = True
        elif name == b"traceparent":
            m = _TRACEPARENT.match(value)
            if m and m.group(1) != _ZERO_TRACE:
                trace_id = m.group(1)
            else:
                invalid = True
    if request_id is not None and trace_id is not None:
        return request_id, trace_id
    if invalid:
        headers = scope["headers"] = [
            (n, v) for n, v in headers
            if not (n == b"x-request-id" and request_id is None) and not (n == b"traceparent" and trace_id is None)
        ]
    traceparent = None
    if trace_id is None:
        traceparent = _new_traceparent()
        trace_id = traceparent[3:35]
    if request_id is None:
        # The trace id doubles as request id, so a log line leads to its trace.
        request_id = trace_id
        headers.append((b"x-request-id", request_id))
    if traceparent is not None:  # a trace started here
        headers.append((b"traceparent", traceparent))
    return request_id, trace_id


def _new_traceparent() -> bytes:
    """``00-<trace id>-<span id>-01`` for a new trace: a trace id (32 hex,
    at [3:35]) and a span id (16 hex), neither all zeros; one formatting.

    From ``random`` (as OpenTelemetry's own id generator does): ids must be
    unique, not secret, and this is a third of the cost of ``os.urandom``,
    a system call per request. The random module reseeds itself in a forked
    child, so workers never share a sequence."""
    while True:
        bits = random.getrandbits(192)
        trace, span = bits >> 64, bits & 0xFFFF_FFFF_FFFF_FFFF
        if trace and span:
            return b"00-%032x-%016x-01" % (trace, span)
