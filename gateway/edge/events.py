"""What the edge protocol refused or cut, counted per kind for the metrics.

The edge runs below the app (uvicorn builds one protocol per connection), so
it can't reach the gateway's ``Metrics``. It counts here instead, on the
event loop, and the gateway moves the counts into
``gateway_edge_events_total`` once a second (``Gateway._tick``) — every event,
where the log shows at most one line per kind a second.
"""
from __future__ import annotations

_counts: dict[str, int] = {}


def count(kind: str) -> None:
    """One request or connection refused or cut, for ``kind`` (the limit's name)."""
    _counts[kind] = _counts.get(kind, 0) + 1


def take() -> dict[str, int]:
    """The counts since the last call (the loop's thread only)."""
    global _counts
    taken, _counts = _counts, {}
    return taken
