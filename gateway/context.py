"""What the gateway knows about one request, handed to whoever serves it.

One object per request, passed explicitly: the forwarder records that the
client left or the upstream failed here, and the access log, metrics and
rollback windows read it when the request is done. The route is not in it:
the app holds it, and the upstream (which the route holds) must not depend on
the route table. Nothing travels as ad-hoc
keys in the ASGI scope.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Headers as ASGI and the wire carry them: raw (name, value) byte pairs in
# arrival order (a dict would merge repeated ones, such as Set-Cookie).
RawHeaders = list[tuple[bytes, bytes]]

# scope["extensions"][CYCLE_KEY]: what serves the request on the gateway's own
# edge (gateway/edge/cycle.py), offered to a watcher of the client's departure
# (gateway/upstream/forwarder.py); only the edge puts it there, as ASGI lets a
# server offer extensions.
CYCLE_KEY = "gateway.cycle"

# A key of an http.response.start message: "my one body message comes next,
# at once". The edge then writes the head with that body in one write
# (gateway/edge/cycle.py); any other server ignores it.
BODY_FOLLOWS = "gateway.body_follows"


class ServingCycle(Protocol):
    """What the edge's cycle offers a watcher of its client: it calls
    ``on_disconnect`` once when the client leaves (``tell_disconnected``)."""

    scope: Any
    loop: asyncio.AbstractEventLoop | None
    disconnected: bool
    on_disconnect: Callable[[], None] | None

    def tell_disconnected(self) -> None: ...


@dataclass(slots=True)
class RequestContext:
    request_id: bytes
    trace_id: bytes
    started: float = field(default_factory=time.perf_counter)
    backend: str = "gateway"  # who answers: "go", "python" or the "gateway" itself
    status: int = 0  # the status sent; 0 while nothing was
    client_gone: bool = False  # the client disconnected before the answer was complete
    upstream_error: str | None = None  # why the legacy backend gave no (whole) answer

    @property
    def request_id_text(self) -> str:
        return self.request_id.decode("latin-1")

    @classmethod
    def detached(cls) -> RequestContext:
        """For a request that is not the gateway's own (a replay, a test)."""
        return cls(b"-", b"-")
