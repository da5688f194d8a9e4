"""The upstream connection pool alone, with fake connections (no sockets)."""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Coroutine, Hashable

import httpx
import pytest

from gateway.upstream.pool import ConnectionPool


class FakeConn:
    def __init__(self, pool: "ConnectionPool[FakeConn]", key: Hashable, n: int):
        self.pool, self.key, self.n = pool, key, n
        self.idle_since = 0.0
        self.closed = False
        self.usable = True

    def is_usable(self) -> bool:
        return self.usable and not self.closed

    def close(self) -> None:
        self.closed = True
        self.pool.discard(self)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(max_connections: int = 2, acquire_timeout: float = 0.05, fail: bool = False):
    clock = Clock()
    made: list[FakeConn] = []

    async def connect(key: Hashable) -> FakeConn:
        await asyncio.sleep(0)
        if fail:
            raise httpx.ConnectError("refused")
        conn = FakeConn(pool, key, len(made))
        made.append(conn)
        return conn

    pool: ConnectionPool[FakeConn] = ConnectionPool(
        connect, max_connections=max_connections, acquire_timeout=acquire_timeout, idle_max_age=30, clock=clock)
    return pool, made, clock


A, B = ("a", 80), ("b", 80)


def sync(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())
    return run


@sync
async def test_a_released_connection_is_reused_warmest_first():
    pool, made, _ = make_pool()
    c1, reused1 = await pool.acquire(A)
    c2, _ = await pool.acquire(A)
    assert not reused1 and pool.open_connections == 2
    pool.release(c1)
    pool.release(c2)
    again, reused = await pool.acquire(A)
    assert reused and again is c2  # the most recently used socket
    assert len(made) == 2 and pool.idle_connections == 1


@sync
async def test_a_full_pool_waits_for_a_release_then_times_out():
    pool, _, _ = make_pool(max_connections=1, acquire_timeout=5)
    c1, _ = await pool.acquire(A)
    waiting = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.release(c1)
    got, reused = await waiting
    assert got is c1 and reused

    pool, _, _ = make_pool(max_connections=1, acquire_timeout=0.05)
    await pool.acquire(A)
    with pytest.raises(httpx.PoolTimeout, match="raise legacy.pool_size"):
        await pool.acquire(A)


@sync
async def test_closing_a_busy_connection_frees_its_slot_for_a_waiter():
    pool, made, _ = make_pool(max_connections=1, acquire_timeout=5)
    c1, _ = await pool.acquire(A)
    waiting = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    c1.close()
    got, reused = await waiting
    assert got is not c1 and not reused and pool.open_connections == 1


@sync
async def test_stale_or_dead_idle_connections_are_closed_not_handed_out():
    pool, made, clock = make_pool()
    c1, _ = await pool.acquire(A)
    c2, _ = await pool.acquire(A)
    pool.release(c1)
    pool.release(c2)
    c2.usable = False  # the upstream closed it while idle
    clock.now += 10
    got, reused = await pool.acquire(A)
    assert got is c1 and reused and c2.closed
    pool.release(got)
    clock.now += 31  # past idle_max_age
    fresh, reused = await pool.acquire(A)
    assert not reused and c1.closed and fresh.n == 2


@sync
async def test_a_full_pool_evicts_another_origins_idle_connection():
    pool, _, _ = make_pool(max_connections=1)
    ca, _ = await pool.acquire(A)
    pool.release(ca)
    cb, reused = await pool.acquire(B)
    assert not reused and ca.closed and cb.key == B and pool.open_connections == 1


@sync
async def test_a_failed_connect_gives_its_slot_back():
    pool, _, _ = make_pool(max_connections=1, fail=True)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            await pool.acquire(A)
    assert pool.open_connections == 0


@sync
async def test_retire_closes_idle_now_and_busy_ones_stay_until_done():
    pool, _, _ = make_pool()
    busy, _ = await pool.acquire(A)
    idle, _ = await pool.acquire(A)
    pool.release(idle)
    pool.retire()
    assert idle.closed and not busy.closed and pool.retired
    assert pool.open_connections == 1 and pool.idle_connections == 0
