"""The upstream connection pool: idle keep-alive connections per origin.

O(1) per request: an idle stack per origin (the most recently used socket is
the warmest), a set of open connections for the limit, and FIFO queues of
waiters when every connection is busy. It knows nothing of HTTP; a connection
is anything with ``key``, ``idle_since``, ``is_usable()`` and ``close()``,
made by the ``connect`` function it is given — so it can be tested alone.

Fair use: the pool is one resource shared by every client, and a request with
a body holds its connection for as long as its client takes to send it. So
requests with a body (``acquire(body=True)``) may hold at most
``max_body_connections`` (``body_share`` of the pool) at once; the rest is
always there for requests without one. A request with a body past that budget
waits, like any request when the pool is full, up to ``acquire_timeout``.
Waiters of both kinds are woken in arrival order, a body waiter only while the
budget has room.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

import httpx

IDLE_MAX_AGE = 30.0  # seconds an idle keep-alive connection may be reused


class Pooled(Protocol):
    # Read-only: a connection's key is fixed when it is made, so a narrower
    # key type (a (host, port) tuple) still satisfies the protocol.
    @property
    def key(self) -> Hashable: ...

    idle_since: float  # the pool stamps it when the connection goes idle

    def is_usable(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)
_Waiter = tuple[int, "asyncio.Future[None]"]  # (arrival number, future)


def body_budget(max_connections: int, share: float) -> int:
    """Connections requests with a body may hold: ``share`` of the pool, at least one."""
    if not 0 < share <= 1:
        raise ValueError(f"body_pool_share must be in (0, 1], not {share!r}")
    return max(1, int(max_connections * share))


class ConnectionPool(Generic[C]):
    def __init__(
        self,
        connect: Callable[[Hashable], Awaitable[C]],
        *,
        max_connections: int = 512,
        acquire_timeout: float = 2.0,
        idle_max_age: float = IDLE_MAX_AGE,
        body_share: float = 0.5,
        clock: Callable[[], float] = time.monotonic,  # for idle ages
    ) -> None:
        self._connect = connect
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.idle_max_age = idle_max_age
        self.body_share = body_share
        self.max_body_connections = body_budget(max_connections, body_share)
        self._clock = clock
        self._idle: dict[Hashable, list[C]] = {}
        self._open: set[C] = set()
        self._connecting = 0
        self._body_conns: set[C] = set()  # lent to requests with a body
        self._body_held = 0  # len(_body_conns) + body requests still connecting
        self._waiters: deque[_Waiter] = deque()
        self._body_waiters: deque[_Waiter] = deque()
        self._arrivals = itertools.count()
        self.retired = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    @property
    def body_connections(self) -> int:
        return self._body_held

    def try_acquire(self, key: Hashable, *, body: bool = False) -> C | None:
        """An idle connection to ``key`` now, if one is free (and, for a
        request with a body, the body budget allows): what :meth:`acquire`
        tries first, without a coroutine. None: call :meth:`acquire`."""
        if body and self._body_held >= self.max_body_connections:
            return None
        conn = self._take_idle(key)
        if conn is not None and body:
            self._lend_for_body(conn)
        return conn

    async def acquire(self, key: Hashable, *, body: bool = False) -> tuple[C, bool]:
        """A connection to ``key`` and whether it was reused (idle before).

        ``body``: the request has a body to send (it counts against
        ``max_body_connections`` until released). Waits up to
        ``acquire_timeout`` for a slot when all are busy (or the body budget
        is spent), then raises ``httpx.PoolTimeout``."""
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            conn = self.try_acquire(key, body=body)
            if conn is not None:
                return conn, True
            if not body or self._body_held < self.max_body_connections:
                if len(self._open) + self._connecting < self.max_connections:
                    return await self._open_new(key, body), False
                if self._evict_other_idle(key):
                    continue
            if deadline is None:
                deadline = loop.time() + self.acquire_timeout
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise httpx.PoolTimeout(self._busy_message(body))
            waiter = loop.create_future()
            (self._body_waiters if body else self._waiters).append((next(self._arrivals), waiter))
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass  # the loop tries once more, then gives up
            except BaseException:
                # Cancelled (the client left) after being woken: pass the
                # wake-up on, or a waiter behind us sleeps past a free slot.
                if waiter.done() and not waiter.cancelled():
                    self._wake_waiter()
                raise

    def release(self, conn: C) -> None:
        """``conn`` finished its exchange and can carry another one."""
        if conn in self._body_conns:
            self._return_from_body(conn)
        conn.idle_since = self._clock()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_waiter()

    def discard(self, conn: C) -> None:
        """``conn`` is closed: forget it and free its slot."""
        if conn in self._open:
            self._open.discard(conn)
            if conn in self._body_conns:
                self._return_from_body(conn)
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

    async def _open_new(self, key: Hashable, body: bool) -> C:
        self._connecting += 1
        if body:
            self._body_held += 1  # held from now: the budget can't be overrun while connecting
        try:
            conn = await self._connect(key)
        except BaseException:
            self._connecting -= 1
            if body:
                self._body_held -= 1
            self._wake_waiter()
            raise
        self._connecting -= 1
        self._open.add(conn)
        if body:
            self._body_conns.add(conn)
        return conn

    def _lend_for_body(self, conn: C) -> None:
        self._body_conns.add(conn)
        self._body_held += 1

    def _return_from_body(self, conn: C) -> None:
        self._body_conns.discard(conn)
        self._body_held -= 1

    def _evict_other_idle(self, key: Hashable) -> bool:
        for other, conns in self._idle.items():
            if other != key and conns:
                conns.pop().close()
                return True
        return False

    def _busy_message(self, body: bool) -> str:
        if body and self._body_held >= self.max_body_connections:
            return (f"all {self.max_body_connections} upstream connections requests with a body may hold "
                    f"are busy (legacy.body_pool_share {self.body_share:g} of legacy.pool_size "
                    f"{self.max_connections}; raise either)")
        return f"all {self.max_connections} upstream connections are busy (raise legacy.pool_size)"

    def _wake_waiter(self) -> None:
        """Wake the longest-waiting request that could now get a connection:
        any request without a body, one with a body only while the budget has room."""
        plain, bodies = self._waiters, self._body_waiters
        while plain and plain[0][1].done():  # gave up (timed out, cancelled)
            plain.popleft()
        while bodies and bodies[0][1].done():
            bodies.popleft()
        body_ok = bool(bodies) and self._body_held < self.max_body_connections
        if plain and (not body_ok or plain[0][0] < bodies[0][0]):
            plain.popleft()[1].set_result(None)
        elif body_ok:
            bodies.popleft()[1].set_result(None)
