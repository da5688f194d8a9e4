"""One worker's client connections: how many, and who gives way when full.

At the limit a new connection does not simply bounce. Like nginx reusing idle
keep-alive connections, the worker first closes its oldest idle keep-alive
connection; failing that, the connection that has waited longest for a request
head it still has not finished (slowloris holds exactly those) — if it has
waited at least ``EVICT_AFTER``, so a flood of fresh connections can't push out a
client that is merely mid-send. Only when every connection is busy with a request
is the newcomer refused with 503. A flood therefore churns the flood, and health
checks and real clients still get in.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Protocol

from . import descriptors
from .limits import EdgeLimits, LiveLimits

log = logging.getLogger("gateway.edge")

EVICT_AFTER = 1.0  # seconds a head-less connection must have waited before it can be pushed out


class Evictable(Protocol):
    def evict(self) -> None: ...


class Slots:
    def __init__(self, live: LiveLimits):
        self.live = live
        self.open: set[Any] = set()  # admitted connections, not yet closed or evicted
        # Oldest first (dicts keep insertion order): value = when it started waiting.
        self.idle: dict[Any, float] = {}  # idle keep-alive, between requests
        self.heads: dict[Any, float] = {}  # waiting for, or receiving, a request head
        self.lingering = 0  # refused connections being closed politely right now
        self._nofile = descriptors.soft_nofile()
        self._ceiling_key: tuple[int, int] | None = None
        self._ceiling = 0

    # -- the limit ------------------------------------------------------------
    def ceiling(self, limits: EdgeLimits) -> int:
        pool = _pool_size(self.live.config())
        key = (limits.max_connections, pool)
        if key != self._ceiling_key:
            self._ceiling_key = key
            self._ceiling = descriptors.connection_ceiling(limits.max_connections, self._nofile, pool)
            if self._ceiling < limits.max_connections:
                log.warning("client connections per worker capped at %d (max_connections %d): descriptor limit "
                            "%d minus %d kept for %d upstream connections, files and refusals",
                            self._ceiling, limits.max_connections, self._nofile,
                            descriptors.reserve(pool), pool)
        return self._ceiling

    def admit(self, conn: Any, limits: EdgeLimits) -> bool:
        """Count ``conn`` in, making room if needed; False: refuse it."""
        if len(self.open) >= self.ceiling(limits) and not self._make_room():
            return False
        self.open.add(conn)
        return True

    def _make_room(self) -> bool:
        victim: Any = next(iter(self.idle), None)
        if victim is None:
            oldest = next(iter(self.heads.items()), None)
            if oldest is None or time.monotonic() - oldest[1] < EVICT_AFTER:
                return False
            victim = oldest[0]
        self.forget(victim)
        victim.evict()
        return True

    # -- what each connection is doing -----------------------------------------
    def waiting_for_head(self, conn: Any) -> None:
        self.idle.pop(conn, None)
        self.heads.pop(conn, None)  # re-queue at the back
        self.heads[conn] = time.monotonic()

    def keeping_alive(self, conn: Any) -> None:
        self.heads.pop(conn, None)
        self.idle.pop(conn, None)
        self.idle[conn] = time.monotonic()

    def busy(self, conn: Any) -> None:
        self.heads.pop(conn, None)
        self.idle.pop(conn, None)

    def forget(self, conn: Any) -> None:
        self.open.discard(conn)
        self.busy(conn)


def _pool_size(config: Any) -> int:
    legacy = getattr(config, "legacy", None)
    return int(getattr(legacy, "pool_size", 512) or 512)


_by_server: weakref.WeakKeyDictionary[Any, Slots] = weakref.WeakKeyDictionary()


def slots_for(server_state: Any, live: LiveLimits) -> Slots:
    """The worker's slots (one uvicorn server per worker process)."""
    slots = _by_server.get(server_state)
    if slots is None:
        slots = _by_server[server_state] = Slots(live)
    return slots
