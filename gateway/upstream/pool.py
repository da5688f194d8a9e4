"""The upstream connection pool: idle keep-alive connections per origin.

O(1) per request: an idle stack per origin (the most recently used socket is
the warmest), a set of open connections for the limit, and a FIFO of waiters
when every connection is busy. It knows nothing of HTTP; a connection is
anything with ``key``, ``idle_since``, ``is_usable()`` and ``close()``, made
by the ``connect`` function it is given — so it can be tested alone.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Awaitable, Callable, Generic, Hashable, Protocol, TypeVar

import httpx

IDLE_MAX_AGE = 30.0  # seconds an idle keep-alive connection may be reused


class Pooled(Protocol):
    key: Hashable
    idle_since: float

    def is_usable(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


class ConnectionPool(Generic[C]):
    def __init__(
        self,
        connect: Callable[[Hashable], Awaitable[C]],
        *,
        max_connections: int = 512,
        acquire_timeout: float = 2.0,
        idle_max_age: float = IDLE_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,  # for idle ages
    ) -> None:
        self._connect = connect
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.idle_max_age = idle_max_age
        self._clock = clock
        self._idle: dict[Hashable, list[C]] = {}
        self._open: set[C] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.retired = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def acquire(self, key: Hashable) -> tuple[C, bool]:
        """A connection to ``key`` and whether it was reused (idle before).

        Waits up to ``acquire_timeout`` for a slot when all are busy, then
        raises ``httpx.PoolTimeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.acquire_timeout
        while True:
            conn = self._take_idle(key)
            if conn is not None:
                return conn, True
            if len(self._open) + self._connecting < self.max_connections:
                return await self._open_new(key), False
            if self._evict_other_idle(key):
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise httpx.PoolTimeout(
                    f"all {self.max_connections} upstream connections are busy (raise legacy.pool_size)"
                )
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass

    def release(self, conn: C) -> None:
        """``conn`` finished its exchange and can carry another one."""
        conn.idle_since = self._clock()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_waiter()

    def discard(self, conn: C) -> None:
        """``conn`` is closed: forget it and free its slot."""
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake_waiter()

    def retire(self) -> None:
        """No new work (a reload replaced this pool): close idle connections now,
        busy ones when their response is done — never under a request."""
        self.retired = True
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.close()
        self._idle.clear()

    def close_all(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    # -- internals ------------------------------------------------------------
    def _take_idle(self, key: Hashable) -> C | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.is_usable() or self._clock() - conn.idle_since > self.idle_max_age:
                conn.close()
                continue
            return conn
        return None

    async def _open_new(self, key: Hashable) -> C:
        self._connecting += 1
        try:
            conn = await self._connect(key)
        except BaseException:
            self._connecting -= 1
            self._wake_waiter()
            raise
        self._connecting -= 1
        self._open.add(conn)
        return conn

    def _evict_other_idle(self, key: Hashable) -> bool:
        for other, conns in self._idle.items():
            if other != key and conns:
                conns.pop().close()
                return True
        return False

    def _wake_waiter(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
