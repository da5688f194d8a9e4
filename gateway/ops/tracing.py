"""Request ids and W3C trace context, stamped on every request at the edge.

``X-Request-Id`` from the client is kept when it is a sane token, else the
trace id is used; ``traceparent`` is passed through when valid, else a new
trace is started. Both are added to the request's headers (so the Go backend and the
Python services see them) and the request id is echoed on the response.
"""
from __future__ import annotations

import os
import re
from typing import Any

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def tag_request(scope: dict[str, Any]) -> tuple[bytes, bytes]:
    """Ensure the scope carries x-request-id and traceparent; return (request id, trace id)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    request_id = trace_id = None
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.match(value):
                request_id = value
        elif name == b"traceparent":
            m = _TRACEPARENT.match(value)
            if m and m.group(1) != b"0" * 32:
                trace_id = m.group(1)
    if request_id is None or trace_id is None:
        headers = scope["headers"] = [
            (n, v) for n, v in headers
            if not (n == b"x-request-id" and request_id is None) and not (n == b"traceparent" and trace_id is None)
        ]
        fresh = os.urandom(24).hex().encode()  # one syscall: trace id + span id
        new_trace = trace_id is None
        if new_trace:
            trace_id = fresh[:32]
        if request_id is None:
            # The trace id doubles as request id, so a log line leads to its trace.
            request_id = trace_id
            headers.append((b"x-request-id", request_id))
        if new_trace:
            headers.append((b"traceparent", b"00-" + trace_id + b"-" + fresh[32:] + b"-01"))
    return request_id, trace_id
